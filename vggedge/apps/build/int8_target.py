"""The INT8 step of `vggedge build` after quantization: measure, reach a target, report.

The plain INT8 model is compared with FP32 on the evaluation split. With a
target (``--min-agreement``) that it misses, sensitivity-aware mixed precision
(:mod:`vggedge.precision.mixed`) rewrites the INT8 artefact with its most
sensitive layers un-quantized, and the speed of both is measured side by side
(onnxruntime CPU, inference only, batch 8). The accuracy report goes beside
the artefact.
"""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ...atomic import private_workdir
from ...precision.agreement import measure
from ...precision.mixed import mixed_precision
from ...spec import load_spec_for, spec_path_for
from ..accuracy import EvaluationSet, accuracy_report, evaluate, run_evaluation, write_accuracy

log = logging.getLogger(__name__)
SPEED_BATCH = 8
#: timed seconds per model and round of the side-by-side speed measurement
SPEED_SECONDS = 2.0


def measure_int8(model: Path, report, eval_set: EvaluationSet, calib: str | Path, method: str,
                 min_agreement: float | None, max_kept_layers: int, selection: str = "predicted") -> None:
    """Fill ``report.accuracy`` (and write it beside the INT8 artefact); reach ``min_agreement`` if given."""
    output_kind = load_spec_for(model).output_kind
    reference = evaluate(model, eval_set)
    int8_path = report.int8.path
    plain = evaluate(int8_path, eval_set)
    stats = measure(reference, plain, eval_set.names, output_kind=output_kind)
    extra: dict[str, Any] = {}
    kept: list[str] = []
    if min_agreement is not None:
        target = min_agreement / 100.0
        extra["target"] = {"min_top1_agreement": target, "met": stats.top1 >= target,
                           "plain_int8": {"top1_agreement": stats.top1, "top1_interval95": [stats.low, stats.high]}}
        if stats.top1 < target:
            with private_workdir(int8_path.parent, "plain-") as work:
                plain_copy = _keep_copy(int8_path, work)

                def run(path: Path, subset: Sequence[int] | None) -> np.ndarray:
                    views = eval_set.views if subset is None else [eval_set.views[i] for i in subset]
                    return run_evaluation(path, views, SPEED_BATCH)  # unfused: never the CPU's saturation

                result = mixed_precision(model, calib, int8_path, run, reference, eval_set.names, target=target,
                                         max_layers=max_kept_layers, output_kind=output_kind, method=method,
                                         plain=plain, selection=selection)
                report.int8, kept, stats = result.int8, result.kept, result.agreement
                extra["target"].update(
                    met=result.met, selection=selection,
                    steps=[{"kept": kept_set, "top1_agreement": top1, "low95": low}
                           for kept_set, (_, top1, low) in zip(result.tried, result.steps)],
                    sensitivity=[{"layer": s.layer, "margin_noise": s.margin_noise, "kl_mean": s.kl_mean,
                                  "top1": s.top1, "macs": s.macs} for s in result.sensitivity])
                if kept:
                    extra["speed"] = speed_ratio(plain_copy, int8_path)
            if not result.met:
                log.warning("INT8 top-1 agreement %.2f%% is still under the target %.2f%% with %d layer(s) kept "
                            "high-precision (the budget): raise --max-kept-layers or calibrate on more images",
                            100 * stats.top1, min_agreement, len(kept))
    report.accuracy = accuracy_report(int8_path, model, eval_set, stats, high_precision=kept, extra=extra)
    report.accuracy_paths.append(write_accuracy(int8_path, report.accuracy))


def _keep_copy(path: Path, work: Path) -> Path:
    """The plain INT8 model (and its spec) under ``work``, hard-linked when possible, before it is replaced."""
    copy = work / path.name
    try:
        os.link(path, copy)
    except OSError:
        shutil.copyfile(path, copy)
    shutil.copyfile(spec_path_for(path), spec_path_for(copy))
    return copy


def speed_ratio(plain: Path, mixed: Path, *, rounds: int = 2, duration_s: float | None = None) -> dict[str, Any]:
    """Inference-only throughput of both models at batch 8 on onnxruntime's CPU provider, alternated.

    The best of ``rounds`` alternating runs each, so a busy moment on a shared machine
    hurts both alike; ``ratio`` = mixed / plain.
    """
    from ..bench import bench

    duration_s = SPEED_SECONDS if duration_s is None else duration_s
    best = {"plain": 0.0, "mixed": 0.0}
    for _ in range(rounds):
        for name, path in (("plain", plain), ("mixed", mixed)):
            result = bench(path, "ort-cpu", [SPEED_BATCH], warmup_s=0.5, duration_s=duration_s, min_iters=3,
                           progress=False).results[0]
            best[name] = max(best[name], result.model_throughput)
    return {"batch": SPEED_BATCH, "backend": "ort-cpu", "plain_img_s": best["plain"], "mixed_img_s": best["mixed"],
            "ratio": best["mixed"] / best["plain"] if best["plain"] else 0.0,
            "how": f"inference only, best of {rounds} alternating runs of {duration_s:g} s each"}
