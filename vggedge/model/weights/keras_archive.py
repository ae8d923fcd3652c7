"""Keras 3 ``.keras`` archives: a zip holding ``config.json`` and ``model.weights.h5``.

``config.json`` gives the model's options, so ``vggedge export --weights m.keras``
needs no further flags:

- Keras-CV's ``VGG16Backbone`` stores its constructor arguments
  (``include_rescaling``, ``include_top``, ``num_classes``, ``pooling``,
  ``input_shape``, ``classifier_activation``, ``name``);
- a Keras functional VGG16 (``keras.applications.VGG16`` or one built by hand)
  lists its layers, from which the same options are read, and whose order names
  the class-named weight groups (``conv2d_3`` is the fourth Conv2D).

With ``include_rescaling`` the weights expect pixels / 255 in RGB (what Keras
image loaders give); otherwise what they expect cannot be read and the user states it.
"""
from __future__ import annotations

import json
import logging
import math
import re
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import WeightsError
from ...spec import UNIT
from ..vgg16 import VGG16Options
from .base import LoadedWeights
from .keras_h5 import layer_names, malformed, open_h5, read_keras3

log = logging.getLogger(__name__)
BACKBONE_KEYS = ("include_rescaling", "include_top", "num_classes", "pooling", "input_shape",
                 "classifier_activation", "name")
#: layer classes a VGG16 may hold that carry no weights
WEIGHTLESS = {"InputLayer", "MaxPooling2D", "Flatten", "Dropout", "Activation", "Rescaling",
              "GlobalAveragePooling2D", "GlobalMaxPooling2D"}


@dataclass(frozen=True)
class ArchiveConfig:
    """What a ``.keras`` archive's config.json says: the options and the weight groups in order."""

    options: dict[str, Any]
    weight_keys: list[str] | None
    class_name: str


def is_keras_archive(path: str | Path) -> bool:
    """True for a ``.keras`` file (a zip with config.json)."""
    path = Path(path)
    return path.suffix.lower() == ".keras" or (zipfile.is_zipfile(path) and _has_config(path))


def _has_config(path: Path) -> bool:
    with zipfile.ZipFile(path) as archive:
        return "config.json" in archive.namelist()


def read_config(path: str | Path) -> ArchiveConfig:
    """Parse config.json of a Keras-CV VGG16Backbone or a Keras functional VGG16."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, zipfile.BadZipFile, KeyError, json.JSONDecodeError) as exc:
        raise WeightsError(f"{path}: not a readable .keras archive with a config.json ({exc})") from None
    if not isinstance(config, dict) or not isinstance(config.get("config") or {}, dict):
        shown = type(config.get("config") if isinstance(config, dict) else config).__name__
        raise WeightsError(f"{path}: config.json holds a JSON {shown} where a model config object belongs; "
                           "expected what keras.Model.save() writes")
    name = config.get("class_name")
    body = config.get("config") or {}
    if name == "VGG16Backbone" or "include_rescaling" in body:
        options = {key: body[key] for key in BACKBONE_KEYS if key in body}
        shape = options.get("input_shape")
        if shape is None or None in shape:  # a size-agnostic backbone: VGG16's 224x224 unless told
            options.pop("input_shape", None)
            log.info("%s: input_shape %s is not fixed; using 224x224x3 (--input-shape to change)", path, shape)
        return ArchiveConfig(options, None, str(name))
    if isinstance(body.get("layers"), list):
        if not all(isinstance(layer, dict) and isinstance(layer.get("config") or {}, dict)
                   for layer in body["layers"]):
            raise WeightsError(f"{path}: config.json's layers are not all JSON objects with a config; "
                               "expected what keras.Model.save() writes")
        try:
            return _functional(body, path, str(name))
        except (TypeError, ValueError, AttributeError) as exc:
            raise WeightsError(f"{path}: config.json has a malformed layer ({exc})") from None
    raise WeightsError(f"{path}: config.json describes a {name!r}; expected Keras-CV's VGG16Backbone "
                       "or a Keras functional VGG16 (keras.applications.VGG16 or the same layers)")


def _functional(body: dict, path: Path, class_name: str) -> ArchiveConfig:
    """Options and weight-group keys from a functional model's layer list."""
    options: dict[str, Any] = {"include_rescaling": False, "name": body.get("name") or "VGG16"}
    used: dict[str, int] = {}
    convs: list[str] = []
    dense: list[tuple[str, dict]] = []
    for layer in body["layers"]:
        kind, cfg = layer.get("class_name"), layer.get("config") or {}
        key = _keras3_key(kind, used)
        if kind == "Conv2D":
            convs.append(key)
        elif kind == "Dense":
            dense.append((key, cfg))
        elif kind == "InputLayer":
            shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
            if shape and None not in shape[1:]:
                options["input_shape"] = tuple(shape[1:])
        elif kind == "Rescaling":
            _check_rescaling(cfg, path)
            options["include_rescaling"] = True
        elif kind in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
            options["pooling"] = "avg" if "Average" in kind else "max"
        elif kind not in WEIGHTLESS:
            raise WeightsError(f"{path}: layer {cfg.get('name')!r} is a {kind}, which VGG16 does not have; "
                               f"expected only Conv2D, Dense and {sorted(WEIGHTLESS)}")
    options["include_top"] = bool(dense)
    if dense:
        last = dense[-1][1]
        options["num_classes"] = last.get("units")
        options["classifier_activation"] = "softmax" if last.get("activation") == "softmax" else None
    return ArchiveConfig(options, convs + [key for key, _ in dense], class_name)


def _keras3_key(kind: str | None, used: dict[str, int]) -> str:
    """The weight-group name Keras 3 gives the next layer of this class (``conv2d``, ``conv2d_1`` ...)."""
    stem = re.sub("([a-z])([A-Z])", r"\1_\2", re.sub("(.)([A-Z][a-z]+)", r"\1_\2", str(kind))).lower()
    count = used.get(stem)
    used[stem] = 0 if count is None else count + 1
    return stem if count is None else f"{stem}_{count + 1}"


def _check_rescaling(cfg: dict, path: Path) -> None:
    scale, offset = float(cfg.get("scale", 1.0)), float(cfg.get("offset", 0.0))
    if not math.isclose(scale, 1 / 255, rel_tol=1e-5) or offset != 0.0:
        raise WeightsError(f"{path}: Rescaling layer {cfg.get('name')!r} computes x * {scale:g} + {offset:g}; "
                           "vggedge builds only Keras-CV's x / 255. Rebuild the model without it and state "
                           "the preprocessing instead (--scale, --mean, --std)")


def load_keras_archive(path: str | Path, options: VGG16Options) -> LoadedWeights:
    """Read model.weights.h5 from the archive, by the layer order config.json gives."""
    path = Path(path)
    config = read_config(path)
    keys = config.weight_keys
    if keys is not None:
        keys = keys[:len(layer_names(options))]
    with tempfile.TemporaryDirectory(prefix="vggedge-keras-") as tmp:
        try:
            with zipfile.ZipFile(path) as archive:
                weights = Path(archive.extract("model.weights.h5", tmp))
        except KeyError:
            raise WeightsError(f"{path}: the archive has no model.weights.h5") from None
        with open_h5(weights) as handle, malformed(path):
            if "layers" not in handle:
                raise WeightsError(f"{path}: model.weights.h5 has no 'layers' group; expected Keras 3's layout")
            arrays = read_keras3(handle["layers"], path, options, keys)
    stated = UNIT if config.options.get("include_rescaling") else None
    if stated is not None:
        log.info("%s: include_rescaling=True, so the weights expect pixels / 255; assuming RGB input "
                 "(what Keras image loaders give)", path)
    return LoadedWeights(arrays, stated, "keras-archive", str(path))
