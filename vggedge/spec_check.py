"""Validation of ModelSpec sidecars: required fields, types, ranges, and agreement with the ONNX model.

A sidecar is read by every later step, so a wrong one must stop loudly at load
time, naming the sidecar file and the field, never turn into NaN scores or a
silent default (a missing ``mean`` is not the Caffe mean).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .errors import ModelError

#: Fields a spec file must state; the others have defaults that cannot change what the model is fed.
REQUIRED = ("input_name", "output_name", "height", "width", "channels", "layout", "dtype", "preprocessing")
REQUIRED_PREPROCESSING = ("channel_order", "scale", "mean", "std", "resize")
TEXT = ("name", "input_name", "output_name", "layout", "dtype", "output_dtype", "output_kind",
        "weights_source", "precision")
OPTIONAL_TEXT = ("labels", "weights_sha256")
POSITIVE = ("height", "width", "channels")
OPTIONAL_POSITIVE = ("num_classes", "fixed_batch")
#: absurdly large values are refused: they only allocate (a 10**9 side, a batch of a million)
LARGEST = {"height": 16384, "width": 16384, "channels": 64, "num_classes": 10**7, "fixed_batch": 4096}
STD_RANGE = (1e-6, 1e6)
LARGEST_MEAN = 1e6
LARGEST_SCALE = 1e6
OUTPUT_KINDS = ("probabilities", "logits", "features")
ONNX_DTYPES = {1: "float32", 10: "float16"}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _fail(source: str, field: str, found: Any, expected: str) -> ModelError:
    return ModelError(f"{source}: field '{field}' is {found!r}; expected {expected}")


def check_types(data: dict[str, Any], source: str) -> None:
    """Refuse missing required fields and values of the wrong type in a spec's JSON form."""
    missing = [f for f in REQUIRED if f not in data]
    pre = data.get("preprocessing")
    if isinstance(pre, dict):
        missing += [f"preprocessing.{f}" for f in REQUIRED_PREPROCESSING if f not in pre]
    if missing:
        raise ModelError(f"{source}: required spec fields missing: {missing}; a spec file must state them "
                         "(no defaults are assumed when loading a file). Re-export, or write them in.")
    for name in TEXT:
        if name in data and not isinstance(data[name], str):
            raise _fail(source, name, data[name], "a string")
    for name in OPTIONAL_TEXT:
        if data.get(name) is not None and not isinstance(data[name], str):
            raise _fail(source, name, data[name], "a string or null")
    for name in POSITIVE:
        if not _is_int(data[name]) or data[name] < 1:
            raise _fail(source, name, data[name], "a positive integer")
    for name in OPTIONAL_POSITIVE:
        if data.get(name) is not None and (not _is_int(data[name]) or data[name] < 1):
            raise _fail(source, name, data[name], "a positive integer or null")
    if "extra" in data and not isinstance(data["extra"], dict):
        raise _fail(source, "extra", data["extra"], "a JSON object")
    if not isinstance(pre, dict):
        raise _fail(source, "preprocessing", pre, "a JSON object")
    _check_preprocessing_types(pre, source, data["channels"])


def _check_preprocessing_types(pre: dict[str, Any], source: str, channels: int) -> None:
    for name in ("channel_order", "resize", "interpolation"):
        if name in pre and not isinstance(pre[name], str):
            raise _fail(source, f"preprocessing.{name}", pre[name], "a string")
    if not _is_number(pre["scale"]) or pre["scale"] <= 0:
        raise _fail(source, "preprocessing.scale", pre["scale"], "a finite number > 0")
    if "resize_shorter" in pre and (not _is_int(pre["resize_shorter"]) or pre["resize_shorter"] < 1):
        raise _fail(source, "preprocessing.resize_shorter", pre["resize_shorter"], "a positive integer")
    for name in ("mean", "std"):
        values = pre[name]
        if not isinstance(values, (list, tuple)) or len(values) != channels or not all(_is_number(v) for v in values):
            raise _fail(source, f"preprocessing.{name}", values, f"a list of {channels} finite numbers "
                        "(one per channel, in channel_order)")


def check_values(spec: Any) -> None:
    """Range checks on a constructed ModelSpec (also guards specs made in Python)."""
    for name in POSITIVE:
        value = getattr(spec, name)
        if not _is_int(value) or value < 1:
            raise ModelError(f"spec field '{name}' is {value!r}; expected a positive integer")
    for name in OPTIONAL_POSITIVE:
        value = getattr(spec, name)
        if value is not None and (not _is_int(value) or value < 1):
            raise ModelError(f"spec field '{name}' is {value!r}; expected a positive integer or None")
    if spec.output_kind not in OUTPUT_KINDS:
        raise ModelError(f"spec field 'output_kind' is {spec.output_kind!r}; expected one of {OUTPUT_KINDS}")
    for name, top in LARGEST.items():
        value = getattr(spec, name)
        if value is not None and value > top:
            raise ModelError(f"spec field '{name}' is {value!r}; expected at most {top}")
    pre = spec.preprocessing
    for i, std in enumerate(pre.std):
        if not math.isfinite(std) or std == 0:
            raise ModelError(f"spec field 'preprocessing.std' is {list(pre.std)}; std[{i}] = {std!r} "
                             "would divide by zero: expected finite non-zero values")
        if not STD_RANGE[0] <= std <= STD_RANGE[1]:
            raise ModelError(f"spec field 'preprocessing.std' is {list(pre.std)}; std[{i}] = {std!r}: expected "
                             f"positive values from {STD_RANGE[0]:g} to {STD_RANGE[1]:g} (a spread, never "
                             "negative or zero)")
    if not all(math.isfinite(m) and abs(m) <= LARGEST_MEAN for m in pre.mean):
        raise ModelError(f"spec field 'preprocessing.mean' is {list(pre.mean)}; expected finite values within "
                         f"+-{LARGEST_MEAN:g}")
    if not math.isfinite(pre.scale) or not 0 < pre.scale <= LARGEST_SCALE:
        raise ModelError(f"spec field 'preprocessing.scale' is {pre.scale!r}; expected a finite number > 0 and "
                         f"<= {LARGEST_SCALE:g}")
    if spec.channels == 3 and len(pre.mean) != 3:
        raise ModelError(f"spec field 'preprocessing.mean' has {len(pre.mean)} values; expected 3 (one per channel)")


def check_against_model(spec: Any, sidecar: Path, model: Path) -> None:
    """Refuse a sidecar whose input name, size, layout, batch or dtype disagrees with the ONNX model itself."""
    from .onnx_inputs import graph_inputs

    try:
        inputs = graph_inputs(model)
    except ModelError:
        return  # not an ONNX file we can read: the runner that loads it says so, naming it
    from .onnx_inputs import graph_outputs

    outputs = graph_outputs(model)
    if outputs and spec.output_name not in outputs:
        raise ModelError(f"{sidecar}: field 'output_name' is {spec.output_name!r}, but the model {model} "
                         f"has outputs {sorted(outputs)}; expected one of them")
    if spec.input_name not in inputs:
        raise ModelError(f"{sidecar}: field 'input_name' is {spec.input_name!r}, but the model {model} "
                         f"has inputs {sorted(inputs)}; expected one of them")
    elem_type, dims = inputs[spec.input_name]
    shown = "[" + ", ".join(str(d) for d in dims) + "]"
    where = f"the model {model} takes input '{spec.input_name}' of shape {shown}"
    if len(dims) != 4:
        raise ModelError(f"{sidecar}: {where}; expected a 4-D image input ({spec.layout})")
    names = ("channels", "height", "width") if spec.layout == "NCHW" else ("height", "width", "channels")
    for name, dim in zip(names, dims[1:]):
        if isinstance(dim, int) and dim > 0 and dim != getattr(spec, name):
            raise ModelError(f"{sidecar}: field '{name}' is {getattr(spec, name)}, but {where} "
                             f"({spec.layout}: {name} {dim}); fix the sidecar or re-export the model")
    batch = dims[0]
    if isinstance(batch, int) and batch > 0 and spec.fixed_batch != batch:
        raise ModelError(f"{sidecar}: field 'fixed_batch' is {spec.fixed_batch}, but {where} "
                         f"(a fixed batch of {batch}); set fixed_batch to {batch}")
    dtype = ONNX_DTYPES.get(elem_type)
    if dtype is not None and dtype != spec.dtype:
        raise ModelError(f"{sidecar}: field 'dtype' is {spec.dtype!r}, but {where} of {dtype}")
