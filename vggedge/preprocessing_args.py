"""Preprocessing from what a user types or writes: presets, options and JSON files.

``PreprocessingChoice`` holds the command-line form (``--preprocessing PRESET|FILE.json``,
``--scale 1/255``, ``--mean``, ``--std``, ``--mean-std-range 0..1|0..255``,
``--channel-order``, ``--resize``, ``--resize-shorter``, ``--interpolation``) and
turns it into a checked :class:`~vggedge.spec.Preprocessing`. Options override the
preset or file they start from; with neither, they start from raw RGB pixels.
Every bad value raises ConfigError naming the option (or the file and field) and
the expected form.

Mean and std are in the units of ``pixel * scale`` unless ``--mean-std-range``
says which form they are written in: ``0..255`` (pixel units, as in Caffe or
mmcv) or ``0..1`` (pixel/255 units, as torchvision writes them); they are then
converted to the scale in force, so ``--mean 0.485,0.456,0.406 --std 0.229,0.224,0.225
--mean-std-range 0..1`` means the same with or without ``--scale 1/255``.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Sequence

from .errors import ConfigError, ModelError
from .spec import CHANNEL_ORDERS, INTERPOLATIONS, PRESETS, RAW_PIXELS, RESIZE_POLICIES, Preprocessing

MEAN_STD_RANGES = {"0..1": 255.0, "0-1": 255.0, "1": 255.0, "0..255": 1.0, "0-255": 1.0, "255": 1.0}
FIELDS = ("channel_order", "scale", "mean", "std", "resize", "resize_shorter", "interpolation")
PRESET_HELP = ", ".join(PRESETS)


@dataclass(frozen=True)
class PreprocessingChoice:
    """A user's statement of preprocessing, each value as typed (text) or already parsed.

    ``where`` prefixes error messages (a file name for JSON); ``option`` names a
    field as the user wrote it (``--scale`` on the command line, ``'scale'`` in JSON).
    """

    preset: str | None = None
    scale: str | float | None = None
    mean: str | Sequence[float] | None = None
    std: str | Sequence[float] | None = None
    mean_std_range: str | None = None
    channel_order: str | None = None
    resize: str | None = None
    resize_shorter: str | int | None = None
    interpolation: str | None = None
    where: str = ""
    json_form: bool = False

    def given(self) -> bool:
        """True when anything at all was stated."""
        return any(getattr(self, f.name) is not None for f in dataclasses.fields(self)
                   if f.name not in ("where", "json_form"))

    def option(self, name: str) -> str:
        """How the user wrote this field: ``--mean-std-range`` or ``FILE: field 'mean_std_range'``."""
        if self.json_form:
            return f"{self.where}: field {name!r}"
        return self.where + "--" + name.replace("_", "-")

    def resolve(self, *, apply_channel_order: bool = True) -> Preprocessing | None:
        """The stated Preprocessing, or None when nothing was stated.

        ``apply_channel_order`` False leaves ``channel_order`` out when a preset or
        file is the base (export uses it as the order the model takes, rewiring
        conv1_1 when it differs from what the weights expect).
        """
        if not self.given():
            return None
        base = self._base()
        if self.channel_order is not None and (apply_channel_order or self.preset is None):
            base = base.with_channel_order(_choice(self.channel_order, CHANNEL_ORDERS, self.option("channel_order")))
        scale = base.scale if self.scale is None else parse_scale(self.scale, self.option("scale"))
        mean, std = base.mean, base.std
        if self.mean is not None:
            mean = self._stats("mean", scale)
        if self.std is not None:
            std = self._stats("std", scale)
        if len(mean) != len(std):
            mean, std = _broadcast(mean), _broadcast(std)
        changes: dict[str, Any] = {"scale": scale, "mean": mean, "std": std}
        if self.resize is not None:
            changes["resize"] = _choice(self.resize, RESIZE_POLICIES, self.option("resize"))
        if self.resize_shorter is not None:
            changes["resize_shorter"] = _positive_int(self.resize_shorter, self.option("resize_shorter"))
        if self.interpolation is not None:
            changes["interpolation"] = _choice(self.interpolation, INTERPOLATIONS, self.option("interpolation"))
        try:
            return dataclasses.replace(base, **changes)
        except ModelError as exc:
            raise ConfigError(f"{self.where}preprocessing: {exc}") from None

    def for_export(self) -> tuple[Preprocessing | None, str | None]:
        """(what the weights expect, the channel order the exported model takes).

        With a preset or file, ``channel_order`` is the model's input order (conv1_1
        is rewired when it differs); with other options and no preset it is both;
        alone, it states nothing about the weights (the file's format says).
        """
        alone = dataclasses.replace(self, channel_order=None)
        stated = self.resolve(apply_channel_order=False) if alone.given() else None
        order = None if self.channel_order is None else _choice(self.channel_order, CHANNEL_ORDERS,
                                                                self.option("channel_order"))
        return stated, order

    def _base(self) -> Preprocessing:
        if self.preset is None:
            return RAW_PIXELS
        if self.preset in PRESETS:
            return PRESETS[self.preset]
        path = Path(self.preset)
        if path.suffix.lower() == ".json" or path.is_file():
            return load_preprocessing_file(path)
        raise ConfigError(f"{self.option('preprocessing')}: {self.preset!r} is neither a preset ({PRESET_HELP}) "
                          "nor a .json file holding a spec or its preprocessing")

    def _stats(self, name: str, scale: float) -> tuple[float, ...]:
        """Mean or std in the units of ``pixel * scale``, converted from the form the user said."""
        values = parse_values(getattr(self, name), self.option(name))
        if name == "std" and not all(v > 0 for v in values):
            raise ConfigError(f"{self.option('std')}: std divides, so expected positive numbers; got {_text(values)}")
        if self.mean_std_range is None:
            _check_form(values, name, scale, self)
            return values
        unit = MEAN_STD_RANGES.get(str(self.mean_std_range).strip())
        if unit is None:
            raise ConfigError(f"{self.option('mean_std_range')}: expected 0..1 (mean/std written for pixels/255, "
                              f"as torchvision does) or 0..255 (pixel units); got {self.mean_std_range!r}")
        return tuple(v * unit * scale for v in values)


def _check_form(values: tuple[float, ...], name: str, scale: float, choice: PreprocessingChoice) -> None:
    """Refuse a mean/std that is plainly written for the other pixel range."""
    top = max(abs(v) for v in values)
    pixels_255 = math.isclose(scale, 1.0)
    pixels_1 = math.isclose(scale, 1 / 255, rel_tol=1e-6)
    unit_like = top <= 1.0 and (name == "std" or top > 0) and not (name == "std" and top == 1.0)
    if pixels_255 and unit_like:
        raise ConfigError(f"{choice.option(name)} {_text(values)} looks written for pixels/255 (the 0..1 form), "
                          "but pixels are 0..255 here (scale 1): add "
                          f"{choice.option('mean_std_range')} 0..1, or {choice.option('scale')} 1/255")
    if pixels_1 and top > 1.5:
        raise ConfigError(f"{choice.option(name)} {_text(values)} looks written in pixel units (the 0..255 form), "
                          "but scale 1/255 makes pixels 0..1 here: add "
                          f"{choice.option('mean_std_range')} 0..255, or drop the scale")


def _text(values: Sequence[float]) -> str:
    return ",".join(f"{v:g}" for v in values)


def _broadcast(values: tuple[float, ...]) -> tuple[float, ...]:
    return values * 3 if len(values) == 1 else values


def _choice(text: str, choices: Sequence[str], option: str) -> str:
    if text not in choices:
        raise ConfigError(f"{option}: expected one of {', '.join(choices)}; got {text!r}")
    return text


def _positive_int(value: str | int, option: str) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        number = 0
    if isinstance(value, bool) or isinstance(value, float) or number < 1:
        raise ConfigError(f"{option}: expected a positive whole number of pixels such as 256; got {value!r}")
    return number


def parse_scale(value: str | float, option: str = "--scale") -> float:
    """A positive multiplier: a number (``0.00392157``, ``1``) or a fraction (``1/255``, ``1/127.5``)."""
    text = str(value).strip()
    try:
        if "/" in text:
            top, bottom = (Fraction(part.strip()) for part in text.split("/"))
            number = float(top / bottom)
        elif isinstance(value, bool):
            raise ValueError
        else:
            number = float(text)
    except (ValueError, ZeroDivisionError):
        number = math.nan
    if not math.isfinite(number) or number <= 0:
        raise ConfigError(f"{option}: expected a positive number or fraction such as 1/255, 1/127.5 or 0.5; "
                          f"got {value!r}")
    return number


def parse_values(value: str | Sequence[float], option: str) -> tuple[float, ...]:
    """One value for every channel or three, one per channel: ``127.5`` or ``0.485,0.456,0.406``."""
    items = value.split(",") if isinstance(value, str) else list(value) if isinstance(value, (list, tuple)) else None
    try:
        numbers = tuple(float(str(v).strip()) for v in items) if items is not None else ()
    except ValueError:
        numbers = ()
    if len(numbers) not in (1, 3) or not all(math.isfinite(v) for v in numbers):
        raise ConfigError(f"{option}: expected 3 comma-separated numbers in the model's channel order, such as "
                          f"0.485,0.456,0.406, or one number for all channels; got {value!r}")
    return _broadcast(numbers)


def load_preprocessing_file(path: str | Path) -> Preprocessing:
    """A JSON file holding a ModelSpec (its ``preprocessing`` is used) or the preprocessing object itself.

    Fields: ``channel_order``, ``scale`` (a number or ``"1/255"``), ``mean``,
    ``std``, ``mean_std_range`` (optional: ``"0..1"`` or ``"0..255"``), ``resize``,
    ``resize_shorter``, ``interpolation``; missing ones take raw RGB pixels' values.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: preprocessing file not found") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable JSON file ({exc})") from None
    if isinstance(data, dict) and isinstance(data.get("preprocessing"), dict):
        data = data["preprocessing"]
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object with preprocessing fields {list(FIELDS)}")
    known = set(FIELDS) | {"mean_std_range"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown preprocessing fields {unknown}; expected only {sorted(known)}")
    choice = PreprocessingChoice(where=str(path), json_form=True, **{k: v for k, v in data.items()})
    return choice.resolve() or RAW_PIXELS
