"""The ``ort-cpu`` backend's runner factory: the given file with a session tuned for this CPU."""
from __future__ import annotations

from pathlib import Path

from ... import env
from ...spec import load_spec_for, spec_path_for
from ..base import Runner, RunnerOptions
from ..ort import OrtOptions, OrtRunner
from . import features as features_mod, saturation
from .planner import auto_variant
from .variants import _threaded, runner_for, variants_for


def cpu_runner(model: str | Path | bytes, runner_options: RunnerOptions | None = None, *,
               precision: str = "as-given", variant: str | None = None,
               ort_options: OrtOptions | None = None) -> Runner:
    """The ``ort-cpu`` backend's factory: the given file with a session tuned for this CPU.

    ``precision="auto"`` runs, of the variants whose file exists beside the FP32
    model: ``variant`` / ``VGGEDGE_CPU_VARIANT`` when given, else the measured
    winner (runtime/tune.py, unless ``VGGEDGE_TUNE=0``), else the first in
    feature-detection order. Other precisions run the file given.
    ``runner_options.threads`` overrides the tuned thread count; ``ort_options``
    replaces the tuned session settings entirely.
    """
    env.check()  # a bad override is refused before any work
    runner_options = runner_options or RunnerOptions()
    if ort_options is not None:
        return OrtRunner(model, ort_options, runner_options)
    features = features_mod.cpu_features()
    if precision == "auto" and not isinstance(model, bytes):
        chosen = auto_variant(model, features, variant, runner_options)
        if chosen is not None:
            return runner_for(chosen[0], model, runner_options,
                              evaluation=None if chosen[0].options.openvino else
                              saturation.evaluation(chosen[1], features))
    # The spec says what the file holds; a bare ONNX file (no sidecar) keeps the plain tuned session.
    quantized = (not isinstance(model, bytes) and spec_path_for(model).exists()
                 and load_spec_for(model).precision == "int8")
    variants = variants_for(features)
    tuned = next((v for v in variants if v.key == ("ov-int8" if quantized else "fp32")), variants[-1])
    options, note = saturation.guard(model, features, _threaded(tuned.options, runner_options))  # issue 22
    return OrtRunner(model, options, runner_options, note=note,
                     evaluation=None if options.openvino else saturation.evaluation(model, features))
