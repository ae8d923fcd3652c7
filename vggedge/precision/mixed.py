"""Sensitivity-aware mixed precision: keep the layers INT8 hurts most in FP32 (no Q/DQ) until a target holds.

1. Sensitivity: for every Conv/Gemm layer, a model with only that layer quantized
   (every other layer and pool left out with onnxruntime's ``nodes_to_exclude``)
   is compared with FP32 on a subset of the evaluation views. What flips a top-1
   answer is noise in the gap between the reference's top-1 and runner-up scores,
   so each layer is ranked by that gap's mean squared change (its *margin noise*);
   mean KL divergence and top-1 agreement are reported beside it.
2. Selection, ``selection="predicted"`` (default): the layers' margin noises add
   up (independent rounding errors), and a view flips when the noise exceeds its
   reference margin, so the expected flips of any set of quantized layers follow
   from the reference margins on the whole split. The noise scale is fitted to the
   plain INT8 model's observed flips; then the cheapest set of layers (fewest
   multiply-accumulates, at most ``max_layers``) predicted to reach the target is
   kept high-precision, measured on the whole split, and the fit is tightened and
   the choice redone until the target holds or no set within the budget can help.
   ``selection="ranked"`` keeps the k top-ranked layers, k = 1, 2, ... instead.

Leaving a layer's Q/DQ out is legal for TensorRT's explicit quantization: that
layer runs in the engine's float precision, the others in INT8, and every
remaining Q/DQ pair still passes :mod:`.qdq_check` (checked before writing).
Calibration is computed once and shared through the calibration cache.

Every candidate is measured through the ``evaluate`` callable; `vggedge build`
passes :func:`vggedge.apps.accuracy.run_evaluation`, which runs Q/DQ files unfused
in float (runtime/cpu/saturation.py), so the layers chosen answer the engine's
quantization noise, never a CPU kernel's saturation (issue 22).
"""
from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..atomic import private_workdir
from ..errors import ConfigError
from .agreement import NEAR_TIE, Agreement, kl_divergence, log_margins, log_scores, measure
from .int8 import QUANTIZED_OPS, Int8Result, quantize_int8

log = logging.getLogger(__name__)
LAYER_OPS = ("Conv", "Gemm", "MatMul")
SELECTIONS = ("predicted", "ranked")
#: evaluate(model path, view indices or None for all) -> outputs (views, classes)
Evaluate = Callable[[Path, "Sequence[int] | None"], np.ndarray]
#: at most this many measured attempts of the predicted selection
ATTEMPTS = 4


@dataclass(frozen=True)
class LayerSensitivity:
    """Output degradation when only this layer is quantized, and what keeping it high-precision costs."""

    layer: str
    kl_mean: float
    top1: float
    #: mean squared change of the reference's top-1 minus runner-up score gap (log scale)
    margin_noise: float = 0.0
    #: multiply-accumulates per image
    macs: int = 0


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
    #: the layer sets measured, in the order of ``steps`` (the first is plain INT8: none kept)
    tried: list[list[str]] = field(default_factory=list)


def quantizable_layers(model: str | Path) -> tuple[list[str], list[str]]:
    """(Conv/Gemm/MatMul layer names, all names quantization touches) in graph order."""
    import onnx

    graph = onnx.load(str(model), load_external_data=False).graph
    layers = [n.name for n in graph.node if n.op_type in LAYER_OPS]
    touched = [n.name for n in graph.node if n.op_type in QUANTIZED_OPS]
    return layers, touched


def layer_macs(model: str | Path) -> dict[str, int]:
    """Multiply-accumulates per image of every Conv/Gemm/MatMul layer (from ONNX shape inference)."""
    import onnx

    proto = onnx.shape_inference.infer_shapes(onnx.load(str(model)))
    graph = proto.graph
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(graph.value_info) + list(graph.output) + list(graph.input)}
    weights = {t.name: list(t.dims) for t in graph.initializer}
    macs = {}
    for node in graph.node:
        if node.op_type not in LAYER_OPS:
            continue
        w = weights.get(node.input[1]) or shapes.get(node.input[1]) or []
        out = shapes.get(node.output[0]) or []
        if node.op_type == "Conv" and len(w) == 4 and len(out) == 4:
            macs[node.name] = int(np.prod(w) * out[2] * out[3])
        else:
            macs[node.name] = int(np.prod(w)) if w else 0
    return macs


def margin_noise(reference: np.ndarray, out: np.ndarray, output_kind: str) -> float:
    """Mean squared change of the reference's top-1 minus runner-up gap, in log-scores (logits or log-probabilities)."""
    ref, new = log_scores(reference, output_kind), log_scores(out, output_kind)
    order = np.argsort(-ref, axis=1)[:, :2]
    rows = np.arange(len(ref))
    gap_ref = ref[rows, order[:, 0]] - ref[rows, order[:, 1]]
    gap_new = new[rows, order[:, 0]] - new[rows, order[:, 1]]
    return float(np.mean((gap_new - gap_ref) ** 2))


def expected_flips(margins: np.ndarray, noise: float) -> float:
    """Expected top-1 flips when the gap of each view moves by Gaussian noise of variance ``noise``."""
    if noise <= 0:
        return 0.0
    scale = math.sqrt(2.0 * noise)
    return float(sum(0.5 * math.erfc(m / scale) for m in margins))


def fit_scale(margins: np.ndarray, noise: float, flips: int) -> float:
    """The factor on ``noise`` that makes the expected flips equal the ``flips`` observed (bisection, log scale)."""
    if noise <= 0:
        return 1.0
    low, high = -12.0, 12.0
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if expected_flips(margins, noise * math.exp(mid)) < flips else (low, mid)
    return math.exp((low + high) / 2)


def choose_layers(ranking: Sequence[LayerSensitivity], margins: np.ndarray, target: float, max_layers: int,
                  scale: float = 1.0) -> list[str]:
    """The cheapest set of at most ``max_layers`` layers whose removal leaves expected agreement >= ``target``.

    Expected flips use ``scale`` times the summed margin noise of the layers still
    quantized. When no set within the budget is expected to reach the target, the
    set that removes the most noise is returned. Ties in cost go to the larger noise removed.
    """
    layers = list(ranking)
    need = sum(s.margin_noise for s in layers) - tolerable_noise(margins, target, scale)
    best: tuple | None = None
    fallback: tuple | None = None
    for k in range(0, min(max_layers, len(layers)) + 1):
        for subset in itertools.combinations(range(len(layers)), k):
            removed = sum(layers[i].margin_noise for i in subset)
            cost = sum(layers[i].macs for i in subset)
            if fallback is None or removed > fallback[0]:
                fallback = (removed, subset)
            if removed >= need and (best is None or (cost, -removed) < best[:2]):
                best = (cost, -removed, subset)
    chosen = best[2] if best is not None else fallback[1]
    return [layers[i].layer for i in sorted(chosen, key=lambda i: -layers[i].margin_noise)]


def tolerable_noise(margins: np.ndarray, target: float, scale: float = 1.0) -> float:
    """The largest summed margin noise whose expected flips (times ``scale``) keep agreement >= ``target``."""
    allowed = (1.0 - target) * len(margins)
    if expected_flips(margins, scale * 1e-12) > allowed:
        return 0.0
    low, high = 1e-12, 1.0
    while expected_flips(margins, scale * high) <= allowed and high < 1e12:
        low, high = high, high * 4
    for _ in range(60):
        mid = math.sqrt(low * high)
        low, high = (mid, high) if expected_flips(margins, scale * mid) <= allowed else (low, mid)
    return low


def layers_needed(ranking: Sequence[LayerSensitivity], margins: np.ndarray, target: float, scale: float = 1.0) -> int:
    """The fewest layers (the noisiest first) whose removal is expected to reach ``target``."""
    noises = sorted((s.margin_noise for s in ranking), reverse=True)
    tolerable = tolerable_noise(margins, target, scale)
    left = sum(noises)
    for k, noise in enumerate([0.0] + noises):
        left -= noise
        if left <= tolerable:
            return k
    return len(noises)


def layer_sensitivity(src: Path, calib: str | Path, work: Path, evaluate: Evaluate, reference: np.ndarray,
                      subset: Sequence[int], *, output_kind: str, method: str = "minmax",
                      cache_dir: Path | None = None, percentile: float = 99.999) -> list[LayerSensitivity]:
    """Every layer's sensitivity, most sensitive first (``reference``: FP32 outputs on ``subset``)."""
    layers, touched = quantizable_layers(src)
    macs = layer_macs(src)
    ranking = []
    for layer in layers:
        path = work / f"only-{layer.replace('/', '_')}.onnx"
        quantize_int8(src, calib, path, method=method, cache_dir=cache_dir, percentile=percentile,
                      nodes_to_exclude=[n for n in touched if n != layer])
        out = evaluate(path, subset)
        kl = float(kl_divergence(reference, out, output_kind).mean())
        top1 = float(np.mean(reference.argmax(axis=1) == out.argmax(axis=1)))
        noise = margin_noise(reference, out, output_kind)
        ranking.append(LayerSensitivity(layer, kl, top1, noise, macs.get(layer, 0)))
        log.info("sensitivity %s: margin noise %.3g, KL %.4g, top-1 agreement %.1f%%", layer, noise, kl, 100 * top1)
        _remove(path)
    return sorted(ranking, key=lambda s: (-s.margin_noise, -s.kl_mean, s.top1))


def mixed_precision(src: str | Path, calib: str | Path, dst: str | Path, evaluate: Evaluate, reference: np.ndarray,
                    view_names: Sequence[str], *, target: float, max_layers: int = 4, output_kind: str,
                    method: str = "minmax", percentile: float = 99.999, sensitivity_views: int = 72,
                    plain: np.ndarray | None = None, selection: str = "predicted") -> MixedResult:
    """Write an INT8 model at ``dst`` whose top-1 agreement with FP32 reaches ``target`` (0-1) if it can.

    ``reference`` holds the FP32 outputs on every evaluation view; ``plain`` the plain
    INT8 model's, when already measured (k = 0 is then not re-run). Sensitivity uses
    ``sensitivity_views`` views spread evenly over the split. ``selection`` is
    "predicted" (the cheapest set expected to reach the target) or "ranked" (the
    k top-ranked layers, k = 1, 2, ...): see the module docstring.
    """
    if selection not in SELECTIONS:
        raise ConfigError(f"mixed-precision selection {selection!r} is unknown; choose one of {SELECTIONS}")
    src, dst = Path(src), Path(dst)
    subset = np.unique(np.linspace(0, len(view_names) - 1, min(sensitivity_views, len(view_names))).astype(int))
    cache_dir = dst.parent / "calibration-cache"
    quant = {"method": method, "percentile": percentile, "cache_dir": cache_dir}
    with private_workdir(dst.parent, "mixed-") as work:
        if plain is None:
            plain_path = quantize_int8(src, calib, work / "plain.onnx", **quant).path
            plain = evaluate(plain_path, None)
            _remove(plain_path)
        stats = measure(reference, plain, view_names, output_kind=output_kind)
        steps, tried = [(0, stats.top1, stats.low)], [[]]
        if stats.top1 >= target:
            result = quantize_int8(src, calib, dst, **quant)
            return MixedResult(result, [], target, stats, True, [], steps, tried)
        ranking = layer_sensitivity(src, calib, work, evaluate, reference[subset], subset,
                                    output_kind=output_kind, **quant)

        def attempt(kept: list[str]) -> Agreement:
            candidate = work / f"keep{len(tried)}.onnx"
            quantize_int8(src, calib, candidate, nodes_to_exclude=kept, **quant)
            got = measure(reference, evaluate(candidate, None), view_names, output_kind=output_kind)
            steps.append((len(kept), got.top1, got.low))
            tried.append(list(kept))
            log.info("mixed precision: %d layer(s) kept (%s): top-1 agreement %.2f%%", len(kept), ", ".join(kept),
                     100 * got.top1)
            _remove(candidate)
            return got

        kept: list[str] = []
        if selection == "ranked":
            for k in range(1, min(max_layers, len(ranking)) + 1):
                kept = [s.layer for s in ranking[:k]]
                stats = attempt(kept)
                if stats.top1 >= target:
                    break
        else:
            kept, stats = _predicted(ranking, log_margins(reference, output_kind), stats, target, max_layers,
                                     attempt)
        result = quantize_int8(src, calib, dst, nodes_to_exclude=kept, **quant)
    return MixedResult(result, kept, target, stats, stats.top1 >= target, ranking, steps, tried)


def _predicted(ranking: list[LayerSensitivity], margins: np.ndarray, plain: Agreement, target: float,
               max_layers: int, attempt: Callable[[list[str]], Agreement]) -> tuple[list[str], Agreement]:
    """Choose, measure, refit the noise scale on what was seen, choose again; the best set measured wins."""
    by_name = {s.layer: s for s in ranking}
    total = sum(s.margin_noise for s in ranking)
    scale = fit_scale(margins, total, plain.views - plain.agree)
    needed = layers_needed(ranking, margins, target, scale)
    if needed > max_layers:
        log.warning("mixed precision: the target is expected to need %d of %d layers high-precision (budget %d): "
                    "%d views are near-ties (FP32 runner-up within %g of the top-1 in log-score), and each layer's INT8 noise alone moves "
                    "margins by %.3g-%.3g (rms)", needed, len(ranking), max_layers, int(np.sum(margins < NEAR_TIE)), NEAR_TIE,
                    min(s.margin_noise for s in ranking) ** 0.5, max(s.margin_noise for s in ranking) ** 0.5)
    best: tuple[list[str], Agreement] | None = None
    seen: set[tuple[str, ...]] = set()
    for _ in range(ATTEMPTS):
        kept = choose_layers(ranking, margins, target, max_layers, scale)
        if tuple(sorted(kept)) in seen:
            break  # nothing new within the budget
        seen.add(tuple(sorted(kept)))
        got = attempt(kept)
        if best is None or got.agree > best[1].agree:
            best = (kept, got)
        if got.top1 >= target:
            return kept, got
        left = total - sum(by_name[name].margin_noise for name in kept)
        scale = max(fit_scale(margins, left, got.views - got.agree), scale * 1.5)
    return best if best is not None else ([], plain)


def _remove(path: Path) -> None:
    """A candidate model and its spec sidecar."""
    from ..spec import spec_path_for

    for p in (path, spec_path_for(path)):
        p.unlink(missing_ok=True)
