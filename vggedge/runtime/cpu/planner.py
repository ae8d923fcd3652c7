"""Which CPU variant ``precision="auto"`` runs: the user's override, the measured winner, or the
feature-detection order. The only importer of the tuner."""
from __future__ import annotations

import logging
from pathlib import Path

from ... import env
from ...errors import BackendUnavailable, VggEdgeError
from ..base import RunnerOptions
from .features import CpuFeatures
from .tune import tuned_variant
from .variants import CpuVariant, choose, current_variant, variant_path, variants_for

log = logging.getLogger(__name__)


def auto_variant(fp32: str | Path, features: CpuFeatures, override: str | None = None,
                 runner_options: RunnerOptions | None = None) -> tuple[CpuVariant, Path] | None:
    """The variant ``precision="auto"`` runs and its file; None when no variant's file exists."""
    wanted = override or env.cpu_variant()
    first: list[CpuVariant] = []
    if wanted:
        first = [choose(features, wanted)]
        path = variant_path(fp32, first[0].model)
        if current_variant(fp32, first[0].model) is None:
            raise BackendUnavailable(f"{path}: the {wanted} CPU variant you asked for needs this file, written from "
                                     f"{fp32}; write it with `vggedge build --model {fp32} --precision int8`")
    elif env.tune_enabled():
        try:
            found = tuned_variant(fp32, runner_options or RunnerOptions(), features)
        except VggEdgeError as exc:  # tuning is an optimisation: its failure leaves the feature order
            log.warning("CPU tuning failed (%s); using the feature-detection order", exc)
            found = None
        first = [found] if found else []
    for candidate in first + variants_for(features):
        path = current_variant(fp32, candidate.model)
        if path is not None:
            log.info("CPU variant: %s (%s)", candidate.label, path.name)
            return candidate, path
    return None
