"""INT8 on CPUs whose U8S8 kernels can saturate, and the evaluation that cannot.

onnxruntime fuses DequantizeLinear -> Conv -> QuantizeLinear into QLinearConv
(or QGemm) with ``u8*s8`` kernels. On x86-64 with AVX2 or AVX-512 but without
VNNI those kernels use ``VPMADDUBSW``, which adds pairs of products into 16 bits
and saturates (onnxruntime's quantization documentation): a Q/DQ file not written
with reduce_range (7-bit weights) loses accuracy there that TensorRT, or the same
kernels on a VNNI CPU, would not lose (issue 22 measured 94.0% against 97.8%).

With graph optimisation disabled onnxruntime runs the graph as written:
DequantizeLinear, a float Conv, QuantizeLinear. That is exact fake quantization in
float, the same on every ISA, and what TensorRT's INT8 result approximates
(checked against onnx's numpy reference evaluator in tests/runtime/test_saturation.py).
It is the evaluation :func:`evaluation_options` gives, used by `build`'s accuracy
report and ``--min-agreement``, and by the ``ort-cpu`` runner for a Q/DQ file that
would saturate here.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ..ort import OrtOptions
from .features import CpuFeatures

if TYPE_CHECKING:
    from .variants import CpuVariant

log = logging.getLogger(__name__)
#: how a Q/DQ file is evaluated when it runs unfused (say so in every report)
UNFUSED = "Q/DQ evaluated unfused in float (predicts TensorRT)"
OPENVINO_EP = "OpenVINO execution provider (CPU) inside onnxruntime"


def qdq_style(model: str | Path) -> str | None:
    """The Q/DQ style a file was written in ("tensorrt", "cpu", "cpu-rr", ...); None for a float file.

    Read from the spec sidecar; a Q/DQ file without one is "unknown" (treated as not reduce-range).
    """
    from ...errors import ModelError
    from ...spec import load_spec_for, spec_path_for

    path = Path(model)
    if spec_path_for(path).is_file():
        try:
            spec = load_spec_for(path)
        except ModelError:
            spec = None
        if spec is not None:
            if spec.precision != "int8":
                return None
            return str(spec.extra.get("calibration", {}).get("style") or "tensorrt")
    return "unknown" if _has_quantize(path) else None


def _has_quantize(path: Path) -> bool:
    import onnx

    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception:  # not an ONNX file we can read: onnxruntime reports that itself
        return False
    return any(node.op_type == "QuantizeLinear" for node in graph.node)


def saturates(model: str | Path | bytes, features: CpuFeatures) -> bool:
    """True when onnxruntime's fused CPU kernels could saturate on this Q/DQ file on this CPU."""
    if isinstance(model, bytes) or not features.u8s8_saturates:
        return False
    style = qdq_style(model)
    return style is not None and style != "cpu-rr"


def kernels_label(features: CpuFeatures) -> str:
    """How onnxruntime's fused INT8 kernels compute here, for reports."""
    if not features.x86:
        return "onnxruntime CPU kernels, " + ("Arm dot-product" if features.arm_dot else "Arm NEON")
    if features.amx:
        return "onnxruntime CPU kernels, VNNI (AMX CPU)"
    if features.vnni:
        return "onnxruntime CPU kernels, VNNI"
    return "onnxruntime CPU kernels, no VNNI (reduce-range file: cannot saturate)"


def evaluation(model: str | Path | bytes, features: CpuFeatures, options: OrtOptions | None = None) -> str:
    """Which evaluation the ``ort-cpu`` runner uses for this file here with these session ``options``
    (one phrase for reports)."""
    if options is not None and options.openvino is not None:
        return OPENVINO_EP
    if saturates(model, features):
        return UNFUSED
    if isinstance(model, bytes) or qdq_style(model) is None:
        return "onnxruntime CPU (float)"
    return kernels_label(features)


def evaluation_options(threads: int | None = None) -> OrtOptions:
    """Session settings of the unfused evaluation (no graph optimisation: DQ -> float op -> Q as written)."""
    return OrtOptions(intra_op_threads=threads, inter_op_threads=1, graph_optimization="disable")


def saturation_note(features: CpuFeatures, variant: "CpuVariant | str | Path") -> str | None:
    """One line saying what runs instead of the saturating kernels, or None when nothing saturates here.

    ``variant``: a CPU variant (its file style) or a model file.
    """
    if not features.u8s8_saturates:
        return None
    if isinstance(variant, (str, Path)):
        if not saturates(variant, features):
            return None
        return (f"{Path(variant).name}: ran unfused ({UNFUSED}), not on onnxruntime's fused INT8 kernels: this CPU "
                f"({features.isa}); for speed run precision=auto (the reduce-range int8-cpu-rr file)")
    if variant.precision != "int8" or variant.model == "cpu-rr" or variant.options.openvino is not None:
        return None
    return (f"CPU variant {variant.key} not offered: its {variant.model}-style file would run on U8S8 kernels that "
            f"saturate on this CPU ({features.isa}); the reduce-range int8-cpu-rr file runs instead")


def int8_policy(features: CpuFeatures) -> str:
    """One line for `vggedge info`: how INT8 runs on this CPU and why."""
    if not features.u8s8_saturates:
        return f"INT8 Q/DQ files run on fused kernels ({kernels_label(features)}): no saturation here"
    return ("U8S8 kernels can saturate here: precision=auto runs the reduce-range int8-cpu-rr file; a TensorRT-style "
            f"or CPU-style INT8 file runs {UNFUSED}; int8-trt and ov-native-int8 are not offered")


def guard(model: str | Path | bytes, features: CpuFeatures, options: OrtOptions) -> tuple[OrtOptions, str | None]:
    """The session settings to run ``model`` with here, and the note to print when they had to change.

    A Q/DQ file that would saturate on this CPU's U8S8 kernels (and is not going to
    an OpenVINO provider) runs unfused instead, with the same thread count.
    """
    if options.openvino is not None or any(
            (p[0] if isinstance(p, tuple) else p) != "CPUExecutionProvider" for p in options.providers[:1]):
        return options, None
    if not saturates(model, features):
        return options, None
    return evaluation_options(options.intra_op_threads), saturation_note(features, Path(model))


__all__ = ["UNFUSED", "qdq_style", "saturates", "evaluation", "evaluation_options", "saturation_note", "guard",
           "kernels_label", "int8_policy"]
