"""The CPU backend's face to applications (`vggedge info`, `tune`, `compare --cpu-variants`).

Applications import nothing from inside runtime/cpu/: what they show or measure
of the CPU path comes through these few functions.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from .base import RunnerOptions
from .ort import OrtRunner
from .cpu import openvino_ep
from .cpu.features import CpuFeatures, cpu_features
from .cpu.planner import tuned_choice
from .cpu.saturation import int8_policy
from .cpu.tune import TuneResult, format_table, is_current, table_for, tune
from .cpu.variants import current_variant, runner_for, variants_for

__all__ = ["CpuFeatures", "evaluation_name", "isa_line", "unfused_runner", "TuneResult", "cpu_path", "format_openvino", "format_table", "format_tuned", "openvino_note",
           "tune", "tuned_choice", "tuned_tables", "variant_runners"]


def cpu_path() -> dict[str, Any]:
    """CPU features, the variants in feature-detection order, and the OpenVINO plugin's state."""
    features = cpu_features()
    return {"features": asdict(features), "variants": [f"{v.key}: {v.label}" for v in variants_for(features)],
            "openvino": openvino_ep.describe(), "isa": features.isa, "int8": int8_policy(features)}


def format_openvino(data: dict[str, Any] | None = None) -> list[str]:
    """Lines on the OpenVINO plugin EP: found, version, devices (``data``: from :func:`cpu_path`)."""
    return openvino_ep.format_description(data if data is not None else openvino_ep.describe())


def openvino_note() -> str | None:
    """Why the OpenVINO variants are not offered although the plugin is installed; None otherwise."""
    if openvino_ep.installed() and not openvino_ep.status().usable:
        return f"ov-int8, ov-bf16 not offered: {openvino_ep.status().reason}"
    return None


def tuned_tables(fp32: str | Path) -> list[dict[str, Any]]:
    """Every cached tuning table of a model (JSON form, ``current``: whether ``auto`` uses it now), newest first."""
    features = cpu_features()
    return [{**t.to_json(), "current": is_current(t, fp32, features)} for t in table_for(fp32)]


def format_tuned(tables: list[dict[str, Any]]) -> list[str]:
    """Text lines of tuning tables in the JSON form of :func:`tuned_tables` (current ones first)."""
    lines = []
    for t in sorted(tables, key=lambda t: not t.get("current", True)):
        result = TuneResult.from_json(t)
        result.cached = True
        lines += format_table(result, current=t.get("current", True))
    return lines


def variant_runners(fp32: str | Path, options: RunnerOptions, features: CpuFeatures | None = None
                    ) -> list[tuple[str, Path, OrtRunner]]:
    """(variant key, file, inactive runner) for every CPU variant whose file exists beside ``fp32``."""
    out = []
    for variant in variants_for(features or cpu_features()):
        path = current_variant(fp32, variant.model)
        if path is not None:
            out.append((variant.key, path, runner_for(variant, fp32, options)))
    return out


def isa_line() -> str:
    """One line naming this CPU's instruction sets that matter for INT8 (and whether U8S8 saturates)."""
    return cpu_features().isa


def unfused_runner(model: str | Path, options: RunnerOptions) -> OrtRunner | None:
    """An (inactive) runner evaluating a Q/DQ file unfused in float (exact fake quantization, what TensorRT's
    INT8 approximates, never a CPU's saturating U8S8 kernels); None for a float file."""
    from .cpu.saturation import UNFUSED, evaluation_options, qdq_style

    if qdq_style(model) is None:
        return None
    return OrtRunner(model, evaluation_options(), options, evaluation=UNFUSED)


def evaluation_name(model: str | Path) -> str:
    """How :func:`unfused_runner` (or, for a float file, onnxruntime's CPU provider) evaluates ``model``."""
    from .cpu.saturation import UNFUSED, qdq_style

    return UNFUSED if qdq_style(model) is not None else "onnxruntime CPU provider (float)"
