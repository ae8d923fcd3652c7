"""`vggedge info`: versions, and which backends can run here (and why not)."""
from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

from ..engine.identity import EngineIdentity
from ..catalogue import base_model, onnx_variants
from ..engine.registry import engine_usability, engines_for, is_engine
from ..errors import VggEdgeError
from ..machine import cpu_name, package_versions
from ..runtime import cpu_path as cpu_backend
from ..runtime.base import RunnerOptions
from ..runtime.select import availability, engine_machine, plan_selection

PACKAGES = ("vggedge", "numpy", "onnx", "onnxruntime", "onnxruntime-gpu", "onnxruntime-ep-openvino",
            "onnxruntime-openvino", "openvino", "opencv-python-headless", "opencv-python", "h5py", "torch", "tensorrt",
            "pycuda", "nvidia-nvimgcodec-cu13")


def versions() -> dict[str, str | None]:
    """Installed version of each relevant package, None when absent."""
    return package_versions(PACKAGES)


def machine() -> dict[str, str]:
    """Python, OS and CPU description."""
    return {"python": platform.python_version(), "platform": platform.platform(),
            "cpu": cpu_name(), "machine": platform.machine()}


def cpu_path() -> dict:
    """CPU features, onnxruntime's providers, and the CPU variants in the order they would be chosen."""
    return cpu_backend.cpu_path()


def info() -> dict:
    """Everything `vggedge info` reports, JSON-ready."""
    return {"machine": machine(), "packages": versions(), "backends": availability(), "cpu": cpu_path()}


def format_info(data: dict) -> str:
    """Human-readable form of :func:`info`."""
    lines = [f"{k}: {v}" for k, v in data["machine"].items()]
    lines.append("packages:")
    lines += [f"  {k}: {v or '-'}" for k, v in data["packages"].items()]
    lines.append("backends:")
    lines += [f"  {k}: {'usable' if v is None else 'unavailable: ' + v}" for k, v in data["backends"].items()]
    features = data["cpu"]["features"]
    flags = ", ".join(k for k, v in features.items() if v is True) or "none detected"
    lines.append(f"cpu path: {features['arch']}, {features['cores']} cores, {flags}; "
                 f"onnxruntime providers {', '.join(features['providers'])}")
    lines += [f"  isa: {data['cpu']['isa']}", f"  int8: {data['cpu']['int8']}"]
    lines += [f"  {i + 1}. {v}" for i, v in enumerate(data["cpu"]["variants"])]
    lines += cpu_backend.format_openvino(data["cpu"]["openvino"])  # the OpenVINO plugin EP: found, version, devices
    return "\n".join(lines)


def _tuned_lines(data: dict[str, Any]) -> list[str]:
    """The measured CPU variant tables of a model (`vggedge tune`), as text."""
    tables = data["tuned"]["tables"]
    lines = [f"tuned CPU variants of {data['tuned']['model']}: " + ("" if tables else "none yet (run `vggedge tune`)")]
    return lines + cpu_backend.format_tuned(tables)


def model_info(model: str | Path, backend: str = "auto", precision: str = "as-given", *,
               max_batch: int = 8) -> dict[str, Any]:
    """What exists for a model (ONNX variants, engines with their identity, the tuned CPU choice) and what would run.

    ``model`` may be an ONNX file or an engine; nothing is loaded or activated.
    """
    model = Path(model)
    onnx_model, identity = model, None
    data: dict[str, Any] = {"model": str(model)}
    if is_engine(model):
        identity = EngineIdentity.load(model)
        data["engine"] = _engine_row(model, identity)
        onnx_model = Path(identity.model_path) if identity.model_path else model
    data["onnx_variants"] = [{"path": str(v.path), "precision": v.precision, "tag": v.tag or "fp32", "stale": v.stale}
                             for v in onnx_variants(onnx_model)]
    machine = engine_machine()
    data["engines"] = [{**_engine_row(r.plan, r.identity), "status": engine_usability(r, machine)}
                       for r in (engines_for(onnx_model) if onnx_model.suffix == ".onnx" else [])]
    data["accuracy"] = _accuracy_reports(model, data["onnx_variants"])  # issue 15: INT8 accuracy reports
    data["tuned"] = {"model": str(base_model(onnx_model)), "tables": cpu_backend.tuned_tables(base_model(onnx_model))}
    options = RunnerOptions(max_batch=max_batch)
    data["cpu_choice"] = _cpu_choice(base_model(onnx_model), options)
    try:
        plan = plan_selection(model, backend, options=options, precision=precision)
        data["preprocessing"] = (plan.spec.preprocessing.describe() if plan.spec is not None
                                 else f"unknown (no spec sidecar beside {plan.artefact})")
        data["would_run"] = {"backend": plan.backend, "artefact": str(plan.artefact), "precision": plan.precision,
                             "why": plan.why, "skipped": dict(plan.skipped)}
    except VggEdgeError as exc:
        known = identity.spec.preprocessing.describe() if is_engine(model) else None  # the engine's own sidecar
        data["preprocessing"] = known or f"unknown ({exc})"
        data["would_run"] = {"error": str(exc)}
    return data


# --- issue 15: the accuracy report `vggedge build` writes beside INT8 artefacts -------------------------
def _accuracy_reports(model: Path, variants: list[dict[str, Any]]) -> dict[str, Any]:
    """{artefact path: accuracy report} for the model itself and its variants that have one."""
    from .accuracy import load_accuracy

    paths = dict.fromkeys([str(model)] + [v["path"] for v in variants])
    return {p: r for p in paths if (r := load_accuracy(p)) is not None}


def _format_accuracy(reports: dict[str, Any]) -> list[str]:
    from .accuracy import summary

    lines = ["INT8 accuracy reports:"] if reports else []
    return lines + [f"  {path}:\n      {summary(r)}" for path, r in reports.items()]
# --- end issue 15 ---------------------------------------------------------------------------------------


def _engine_row(plan: Path, identity: EngineIdentity) -> dict[str, Any]:
    return {"path": str(plan), "precision": identity.precision, "batch": list(identity.batch),
            "tensorrt_version": identity.tensorrt_version, "gpu": identity.gpu_name,
            "compute_capability": identity.compute_capability, "source": identity.model_path,
            "model_sha256": identity.model_sha256}


def _cpu_choice(fp32: Path, options: RunnerOptions) -> dict[str, Any]:
    """The CPU variant ``precision="auto"`` would really run (the cached tuned winner) and why; measures nothing."""
    try:
        return cpu_backend.tuned_choice(fp32, options)
    except VggEdgeError as exc:
        return {"error": str(exc)}


def format_model_info(data: dict[str, Any]) -> str:
    """Human-readable form of :func:`model_info`."""
    lines = [f"model: {data['model']}", f"preprocessing: {data['preprocessing']}"]
    if "engine" in data:
        e = data["engine"]
        lines.append(f"  engine: {e['precision']}, batch {','.join(map(str, e['batch']))}, TensorRT "
                     f"{e['tensorrt_version']}, {e['gpu']} (sm {e['compute_capability']}), from {e['source']}")
    lines.append("ONNX variants:")
    lines += [f"  {v['tag']:<12} {v['precision']:<5} {v['path']}"
              + (f"\n      STALE, not used: {v['stale']}" if v.get("stale") else "")
              for v in data["onnx_variants"]] or ["  (none)"]
    lines.append("TensorRT engines:")
    lines += [f"  {e['precision']:<5} batch {','.join(map(str, e['batch']))}  TensorRT {e['tensorrt_version']}  "
              f"{e['gpu']} (sm {e['compute_capability']})  {e['path']}\n      {e['status']}"
              for e in data["engines"]] or ["  (none built; `vggedge build --model M` on a TensorRT machine)"]
    lines += _format_accuracy(data.get("accuracy", {}))  # issue 15
    cpu = data["cpu_choice"]
    if "error" in cpu:
        lines.append(f"tuned CPU choice: {cpu['error']}")
    else:
        lines.append(f"CPU choice (precision auto): {cpu['variant']}: {cpu['label']} ({cpu['file']}: {cpu['why']})")
    run = data["would_run"]
    if "error" in run:
        lines.append(f"would run: nothing: {run['error']}")
    else:
        lines.append(f"would run: {run['backend']} on {run['artefact']} ({run['precision'] or 'no spec'})")
        lines.append(f"  why: {run['why']}")
        lines += [f"  skipped {name}: {reason}" for name, reason in run["skipped"].items()]
    lines += _tuned_lines(data)
    lines += cpu_backend.format_openvino()
    return "\n".join(lines)
