"""The ``ort-cpu`` backend's planner hook: which file runs on the CPU, with which session settings, and why.

``precision="auto"`` runs, of the variants whose file exists beside the FP32
model: the user's override (``VGGEDGE_CPU_VARIANT``), else the winner measured
once per machine and model (tune.py, unless ``VGGEDGE_TUNE=0``), else the first
in feature-detection order. Other precisions run the file asked for, on the
session tuned for what its spec says it holds. The only importer of the tuner.
"""
from __future__ import annotations

import logging
from pathlib import Path

from ... import env
from ...catalogue import base_model, onnx_for_precision
from ...errors import BackendUnavailable, VggEdgeError
from ..base import RunnerOptions
from ..plan import Choice, PlanRequest, spec_if_any
from . import features as features_mod, saturation
from .features import CpuFeatures
from .tune import key_for, load, runnable, tuned_variant
from .variants import CpuVariant, choose, current_variant, threaded, variant_path, variant_runner, variants_for

log = logging.getLogger(__name__)


def plan_cpu(request: PlanRequest, *, variant: str | None = None,
             features: CpuFeatures | None = None) -> Choice:
    """The file the CPU runs for ``request`` and its tuned :class:`OrtOptions` (the runner's ``options``).

    ``variant`` overrides ``VGGEDGE_CPU_VARIANT`` for ``precision="auto"``.
    A missing or stale precision variant raises ModelError with the command that writes it.
    """
    env.check()  # a bad override is refused before any work
    features = features or features_mod.cpu_features()
    if request.precision == "auto":
        chosen = auto_variant(base_model(request.model), features, variant, request.options)
        if chosen is not None:
            picked, path, how = chosen
            evaluation = saturation.evaluation(path, features, picked.options)
            runner, kwargs, options = variant_runner(picked, request.options, evaluation)
            micro = f", calls of {options.micro_batch}" if options.micro_batch else ""
            return Choice(path, f"{path.name}: CPU variant {picked.key} ({how}{micro})", kwargs, runner=runner,
                          options=options)
    path = onnx_for_precision(request.model, "as-given" if request.precision == "auto" else request.precision)
    spec = spec_if_any(path)
    quantized = spec is not None and spec.precision == "int8"  # the spec says what the file holds
    variants = variants_for(features)
    tuned = next((v for v in variants if v.key == ("ov-int8" if quantized else "fp32")), variants[-1])
    options, note = saturation.guard(path, features, threaded(tuned.options, request.options))  # issue 22
    what = "the model given" if path == request.model else f"its {request.precision} variant"
    held = spec.precision if spec is not None else "no spec"
    why = note or (f"{path.name}: {what} ({held}, precision {request.precision}) on the {tuned.key} CPU session")
    evaluation = saturation.evaluation(path, features, options)
    return Choice(path, why, {"options": options, "note": note, "evaluation": evaluation}, spec)


def auto_variant(fp32: str | Path, features: CpuFeatures, override: str | None = None,
                 runner_options: RunnerOptions | None = None, *, measure: bool = True
                 ) -> tuple[CpuVariant, Path, str] | None:
    """The variant ``precision="auto"`` runs, its file and why; None when no variant's file exists.

    ``measure=False`` reads a cached tuning result but times nothing (``vggedge info``).
    """
    wanted = override or env.cpu_variant()
    first: list[CpuVariant] = []
    how = "first in feature-detection order whose file exists" + ("" if env.tune_enabled() else "; tuning off")
    if wanted:
        first = [choose(features, wanted)]
        path = variant_path(fp32, first[0].model)
        if current_variant(fp32, first[0].model) is None:
            raise BackendUnavailable(f"{path}: the {wanted} CPU variant you asked for needs this file, written from "
                                     f"{fp32}; write it with `vggedge build --model {fp32} --precision int8`")
        how = "asked for" if override else "asked for by VGGEDGE_CPU_VARIANT"
    elif env.tune_enabled():
        try:
            found = (tuned_variant(fp32, runner_options or RunnerOptions(), features) if measure
                     else cached_variant(fp32, runner_options or RunnerOptions(), features))
        except VggEdgeError as exc:  # tuning is an optimisation: its failure leaves the feature order
            log.warning("CPU tuning failed (%s); using the feature-detection order", exc)
            found = None
        first = [found] if found else []
        if not found and not measure:
            how += " (not tuned yet at this batch: the first run measures, and may choose another)"
    for candidate in first + variants_for(features):
        path = current_variant(fp32, candidate.model)
        if path is not None:
            if first and candidate is first[0] and not wanted:
                how = "measured fastest here"
            log.info("CPU variant: %s (%s)", candidate.label, path.name)
            return candidate, path, how
    return None


def cached_variant(fp32: str | Path, options: RunnerOptions, features: CpuFeatures) -> CpuVariant | None:
    """The winner cached for this model, machine and batch, or None (nothing is timed)."""
    variants = runnable(fp32, features) if Path(fp32).is_file() else []
    result = load(key_for(fp32, options.max_batch, features, variants, options.threads)) if variants else None
    return next((v for v in variants if result is not None and v.key == result.winner), None)


def tuned_choice(fp32: str | Path, runner_options: RunnerOptions | None = None) -> dict:
    """What ``precision="auto"`` would run on this CPU for ``fp32`` (from the tuning cache; nothing is timed)."""
    chosen = auto_variant(fp32, features_mod.cpu_features(), None, runner_options, measure=False)
    if chosen is None:
        return {"error": f"no CPU variant's file exists beside {fp32}"}
    picked, path, how = chosen
    return {"variant": picked.key, "label": picked.label, "file": str(path), "exists": True, "why": how}
