"""FP32 ONNX -> FP16 ONNX (FP16 weights and compute), with FP32 or FP16 input/output.

TensorRT 11 builds strongly typed networks: precision must live in the ONNX.
The conversion is onnxconverter-common's well-kept ``convert_float_to_float16``.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import onnx

from ..atomic import atomic_target, check_target
from ..errors import ModelError
from ..catalogue import file_sha256
from ..spec import ModelSpec, load_spec_for, spec_path_for

log = logging.getLogger(__name__)
FP16_MAX = float(np.finfo(np.float16).max)


def to_fp16(model: onnx.ModelProto, *, fp16_io: bool = False) -> onnx.ModelProto:
    """Convert a model to FP16; ``fp16_io`` makes the inputs/outputs FP16 too (else Casts keep them FP32)."""
    try:
        from onnxconverter_common.float16 import convert_float_to_float16
    except ImportError:
        raise ModelError("FP16 conversion needs onnxconverter-common (pip install onnxconverter-common)") from None
    _warn_out_of_range(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        converted = convert_float_to_float16(model, keep_io_types=not fp16_io, max_finite_val=FP16_MAX,
                                             disable_shape_infer=False)
    tiny = sum("truncated" in str(w.message) for w in caught)
    if tiny:
        log.info("FP16: %d weights smaller than 1e-7 in magnitude were rounded to +-1e-7", tiny)
    onnx.checker.check_model(converted)
    return converted


def _warn_out_of_range(model: onnx.ModelProto) -> None:
    for init in model.graph.initializer:
        if init.data_type == onnx.TensorProto.FLOAT:
            peak = float(np.abs(onnx.numpy_helper.to_array(init)).max(initial=0.0))
            if peak > FP16_MAX:
                log.warning("initializer %s has |values| up to %.3g, beyond FP16's %.0f: they will be clamped",
                            init.name, peak, FP16_MAX)


def write_fp16(src: str | Path, dst: str | Path | None = None, *, fp16_io: bool = False) -> Path:
    """Write ``<stem>.fp16.onnx`` (and its spec) beside an FP32 model; returns the path."""
    src = Path(src)
    spec = load_spec_for(src)
    dst = Path(dst) if dst else src.with_name(f"{src.stem}.fp16.onnx")
    try:
        model = onnx.load(src)
    except Exception as exc:  # onnx raises DecodeError and others for a broken file
        raise ModelError(f"{src}: not a loadable ONNX model ({exc})") from None
    converted = to_fp16(model, fp16_io=fp16_io)
    with atomic_target(check_target(dst, "FP16 model")) as tmp:  # removed on any exit, Ctrl-C included
        onnx.save(converted, tmp)
    io = "float16" if fp16_io else "float32"
    fp16_spec: ModelSpec = spec.replace(precision="fp16", dtype=io, output_dtype=io,
                                        extra={**spec.extra, "source_sha256": file_sha256(src)})
    fp16_spec.save(spec_path_for(dst))
    log.info("wrote %s (FP16 weights and compute, %s input/output)", dst, io)
    return dst
