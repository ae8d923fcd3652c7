"""The catalogue of files derived from a model: how they are named, which are current, and the model hash.

Beside ``<stem>.onnx`` (FP32) live its variants ``<stem>.<tag>.onnx``, each with
its ``.spec.json``: ``fp16`` and ``int8`` (TensorRT-style Q/DQ) from
``vggedge build``, ``int8-cpu`` / ``int8-cpu-rr`` written for the CPU backend.
A variant records the sha256 of the FP32 model it was written from; one whose
model changed since is *stale* and never runs. Every module that names, parses
or checks these files goes through here (engine/registry.py for engines,
runtime/cpu/variants.py for the CPU's files, the planner hooks for selection).
"""
from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from .errors import ConfigError, ModelError
from .spec import load_spec_for, spec_path_for

PathLike = Union[str, Path]
#: the ``precision=`` choices of selection (the precision of the file that runs, or how to find it)
PRECISION_CHOICES = ("as-given", "auto", "fp32", "fp16", "int8")
#: ONNX variant tags beside ``<stem>.onnx``, in listing order ("" is the FP32 base itself)
VARIANT_TAGS = ("fp16", "int8", "int8-cpu", "int8-cpu-rr")
_VARIANT = re.compile(r"^(?P<base>.+?)\.(?P<tag>" + "|".join(re.escape(t) for t in VARIANT_TAGS) + r")$")


def check_precision_choice(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISION_CHOICES`, else ConfigError listing them."""
    if precision not in PRECISION_CHOICES:
        raise ConfigError(f"precision {precision!r} is unknown; choose one of {list(PRECISION_CHOICES)}")
    return precision


# --- naming: parse and build ----------------------------------------------------------------------------
def base_model(model: PathLike) -> Path:
    """The FP32 ONNX a variant was made from: ``m.fp16.onnx`` / ``m.int8-cpu.onnx`` -> ``m.onnx``."""
    model = Path(model)
    match = _VARIANT.match(model.stem)
    return model.with_name(match.group("base") + ".onnx") if match else model


def variant_tag(path: PathLike) -> str:
    """The variant tag of a file name (``m.int8-cpu.onnx`` -> ``int8-cpu``); "" for a base model."""
    match = _VARIANT.match(Path(path).stem)
    return match.group("tag") if match else ""


def variant_file(model: PathLike, tag: str) -> Path:
    """The file of variant ``tag`` of ``model`` (or of the model it was made from); "" is the FP32 base."""
    if tag and tag not in VARIANT_TAGS:
        raise ConfigError(f"ONNX variant {tag!r} is unknown; expected one of {list(VARIANT_TAGS)}")
    base = base_model(model)
    return base.with_name(f"{base.stem}.{tag}.onnx") if tag else base


@dataclass(frozen=True)
class OnnxVariant:
    """One ONNX file beside a model: its precision (from its spec), file-name tag, and whether it is stale."""

    path: Path
    precision: str
    tag: str  # "" for the FP32 base, else one of VARIANT_TAGS
    #: why this file was not written from the model beside it (None: it was): never run, never matched
    stale: str | None = None


def onnx_variants(model: PathLike) -> list[OnnxVariant]:
    """Every ONNX variant of ``model`` that exists beside it (the FP32 base first), stale ones flagged."""
    base = base_model(model)
    found = []
    for tag in ("",) + VARIANT_TAGS:
        path = variant_file(base, tag)
        if path.is_file():
            found.append(OnnxVariant(path, spec_precision(path), tag, stale_reason(path, base)))
    return found


def spec_precision(path: PathLike) -> str:
    """The precision a file's spec states; without a readable spec, what its name says."""
    if spec_path_for(path).exists():
        try:
            return load_spec_for(path).precision
        except ModelError:
            pass
    return {"": "fp32", "fp16": "fp16"}.get(variant_tag(path), "int8")


def onnx_for_precision(model: PathLike, precision: str) -> Path:
    """The ONNX file that serves ``precision``: the model itself for "as-given"/"auto", else its variant.

    A missing or stale variant raises ModelError with the build command that writes it.
    """
    check_precision_choice(precision)
    if precision in ("as-given", "auto"):
        return Path(model)
    base = base_model(model)
    path = variant_file(base, "" if precision == "fp32" else precision)
    if not path.is_file():
        raise ModelError(f"{path}: no {precision} variant of {base} (write it with "
                         f"`vggedge build --model {base} --precision {precision}`)")
    stale = stale_reason(path, base)
    if stale:
        raise ModelError(stale)
    return path


# --- staleness --------------------------------------------------------------------------------------------
def recorded_source(variant: PathLike) -> str | None:
    """The sha256 of the FP32 model a variant was written from, as its spec records it (None: not recorded)."""
    try:
        extra = load_spec_for(variant).extra
    except ModelError:
        return None
    return extra.get("source_sha256") or (extra.get("calibration") or {}).get("source_sha256")


def stale_reason(variant: PathLike, base: PathLike | None = None) -> str | None:
    """Why ``variant`` (``m.int8.onnx`` ...) was not written from the FP32 model beside it; None when it was.

    A variant whose spec records no source (older files) counts as current when it is
    newer than the model. A stale variant would give another model's answers.
    """
    variant = Path(variant)
    base = Path(base) if base else base_model(variant)
    if variant == base or not base.is_file():
        return None
    tag = variant_tag(variant)
    redo = (f"`vggedge build --model {base} --precision {tag}`" if tag in ("fp16", "int8")
            else "`vggedge demo` or vggedge.runtime.cpu.variants.prepare_variants()")
    recorded = recorded_source(variant)
    if recorded is None:
        if variant.stat().st_mtime_ns >= base.stat().st_mtime_ns:
            return None
        return f"{variant} is older than {base} and does not record which model it came from; rewrite it with {redo}"
    if recorded != file_sha256(base):
        return (f"{variant} was written from another {base.name} (sha256 {recorded[:12]}..., the model now is "
                f"{file_sha256(base)[:12]}...): it would give the old model's answers; rewrite it with {redo}")
    return None


def current_variant_file(model: PathLike, tag: str) -> Path | None:
    """Variant ``tag``'s file when it exists and was written from the FP32 model beside it, else None."""
    path = variant_file(model, tag)
    if not path.is_file() or stale_reason(path, base_model(model)):
        return None
    return path


# --- the one model hash -----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4096)  # calibration sets hash each image too
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: PathLike) -> str:
    """sha256 of a file (a full VGG16 is 553 MB), hashed once per process while its size and mtime stay."""
    stat = Path(path).stat()
    return _sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


__all__ = ["OnnxVariant", "PRECISION_CHOICES", "VARIANT_TAGS", "base_model", "check_precision_choice",
           "current_variant_file", "file_sha256", "onnx_for_precision", "onnx_variants", "recorded_source",
           "spec_precision", "stale_reason", "variant_file", "variant_tag"]
