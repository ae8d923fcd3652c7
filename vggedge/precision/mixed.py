"""Sensitivity-aware mixed precision: keep the layers INT8 hurts most in FP32 (no Q/DQ) until a target holds.

1. Sensitivity: for every Conv/Gemm layer, a model with only that layer quantized
   (every other layer and pool left out with onnxruntime's ``nodes_to_exclude``)
   is compared with FP32 on a subset of the evaluation views; the mean KL
   divergence of its outputs (then its top-1 disagreement) ranks the layers.
2. Selection: the k most sensitive layers are left un-quantized, k = 1, 2, ...,
   until top-1 agreement on the whole evaluation split reaches the target or
   ``max_layers`` is spent.

Leaving a layer's Q/DQ out is legal for TensorRT's explicit quantization: that
layer runs in the engine's float precision, the others in INT8, and every
remaining Q/DQ pair still passes :mod:`.qdq_check` (checked before writing).
Calibration is computed once and shared through the calibration cache.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..atomic import private_workdir
from .agreement import Agreement, kl_divergence, measure
from .int8 import QUANTIZED_OPS, Int8Result, quantize_int8

log = logging.getLogger(__name__)
LAYER_OPS = ("Conv", "Gemm", "MatMul")
#: evaluate(model path, view indices or None for all) -> outputs (views, classes)
Evaluate = Callable[[Path, "Sequence[int] | None"], np.ndarray]


@dataclass(frozen=True)
class LayerSensitivity:
    """Output degradation when only this layer is quantized."""

    layer: str
    kl_mean: float
    top1: float


@dataclass
class MixedResult:
    """The artefact written, the layers kept high-precision, the ranking and each step tried."""

    int8: Int8Result
    kept: list[str]
    target: float
    agreement: Agreement
    met: bool
    sensitivity: list[LayerSensitivity] = field(default_factory=list)
    #: (layers kept, top-1 agreement, lower bound) for every candidate evaluated, in order
    steps: list[tuple[int, float, float]] = field(default_factory=list)


def quantizable_layers(model: str | Path) -> tuple[list[str], list[str]]:
    """(Conv/Gemm/MatMul layer names, all names quantization touches) in graph order."""
    import onnx

    graph = onnx.load(str(model), load_external_data=False).graph
    layers = [n.name for n in graph.node if n.op_type in LAYER_OPS]
    touched = [n.name for n in graph.node if n.op_type in QUANTIZED_OPS]
    return layers, touched


def layer_sensitivity(src: Path, calib: str | Path, work: Path, evaluate: Evaluate, reference: np.ndarray,
                      subset: Sequence[int], *, output_kind: str, method: str = "minmax",
                      cache_dir: Path | None = None) -> list[LayerSensitivity]:
    """Every layer's sensitivity, most sensitive first (``reference``: FP32 outputs on ``subset``)."""
    layers, touched = quantizable_layers(src)
    ranking = []
    for layer in layers:
        path = work / f"only-{layer.replace('/', '_')}.onnx"
        quantize_int8(src, calib, path, method=method, cache_dir=cache_dir,
                      nodes_to_exclude=[n for n in touched if n != layer])
        out = evaluate(path, subset)
        kl = float(kl_divergence(reference, out, output_kind).mean())
        top1 = float(np.mean(reference.argmax(axis=1) == out.argmax(axis=1)))
        ranking.append(LayerSensitivity(layer, kl, top1))
        log.info("sensitivity %s: KL %.4g, top-1 agreement %.1f%%", layer, kl, 100 * top1)
        _remove(path)
    return sorted(ranking, key=lambda s: (-s.kl_mean, s.top1))


def mixed_precision(src: str | Path, calib: str | Path, dst: str | Path, evaluate: Evaluate, reference: np.ndarray,
                    view_names: Sequence[str], *, target: float, max_layers: int = 4, output_kind: str,
                    method: str = "minmax", sensitivity_views: int = 72,
                    plain: np.ndarray | None = None) -> MixedResult:
    """Write an INT8 model at ``dst`` whose top-1 agreement with FP32 reaches ``target`` (0-1) if it can.

    ``reference`` holds the FP32 outputs on every evaluation view; ``plain`` the plain
    INT8 model's, when already measured (k = 0 is then not re-run). Sensitivity uses
    ``sensitivity_views`` views spread evenly over the split.
    """
    src, dst = Path(src), Path(dst)
    subset = np.unique(np.linspace(0, len(view_names) - 1, min(sensitivity_views, len(view_names))).astype(int))
    cache_dir = dst.parent / "calibration-cache"
    with private_workdir(dst.parent, "mixed-") as work:
        if plain is None:
            plain_path = quantize_int8(src, calib, work / "plain.onnx", method=method, cache_dir=cache_dir).path
            plain = evaluate(plain_path, None)
            _remove(plain_path)
        stats = measure(reference, plain, view_names, output_kind=output_kind)
        steps = [(0, stats.top1, stats.low)]
        if stats.top1 >= target:
            result = quantize_int8(src, calib, dst, method=method, cache_dir=cache_dir)
            return MixedResult(result, [], target, stats, True, [], steps)
        ranking = layer_sensitivity(src, calib, work, evaluate, reference[subset], subset,
                                    output_kind=output_kind, method=method, cache_dir=cache_dir)
        kept: list[str] = []
        for k in range(1, min(max_layers, len(ranking)) + 1):
            kept = [s.layer for s in ranking[:k]]
            candidate = work / f"keep{k}.onnx"
            quantize_int8(src, calib, candidate, method=method, cache_dir=cache_dir, nodes_to_exclude=kept)
            stats = measure(reference, evaluate(candidate, None), view_names, output_kind=output_kind)
            steps.append((k, stats.top1, stats.low))
            log.info("mixed precision: %d layer(s) kept (%s): top-1 agreement %.2f%%", k, ", ".join(kept),
                     100 * stats.top1)
            _remove(candidate)
            if stats.top1 >= target:
                break
        result = quantize_int8(src, calib, dst, method=method, cache_dir=cache_dir, nodes_to_exclude=kept)
    return MixedResult(result, kept, target, stats, stats.top1 >= target, ranking, steps)


def _remove(path: Path) -> None:
    """A candidate model and its spec sidecar."""
    from ..spec import spec_path_for

    for p in (path, spec_path_for(path)):
        p.unlink(missing_ok=True)
