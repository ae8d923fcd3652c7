"""`vggedge info`: versions, and which backends can run here (and why not)."""
from __future__ import annotations

import importlib.metadata
import platform

from ..runtime.select import availability

PACKAGES = ("vggedge", "numpy", "onnx", "onnxruntime", "onnxruntime-gpu", "onnxruntime-ep-openvino",
            "onnxruntime-openvino", "opencv-python-headless", "opencv-python", "h5py", "torch", "tensorrt", "pycuda")


def versions() -> dict[str, str | None]:
    """Installed version of each relevant package, None when absent."""
    found: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def machine() -> dict[str, str]:
    """Python, OS and CPU description."""
    return {"python": platform.python_version(), "platform": platform.platform(),
            "cpu": cpu_name(), "machine": platform.machine()}


def cpu_name() -> str:
    """The CPU model name from /proc/cpuinfo, else platform.processor()."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_path() -> dict:
    """CPU features, onnxruntime's providers, and the CPU variants in the order they would be chosen."""
    from dataclasses import asdict

    from ..runtime.cpu import cpu_features, variants_for

    features = cpu_features()
    from ..runtime.openvino_ep import describe  # openvino: plugin found, version, devices, skip reason

    return {"features": asdict(features), "variants": [f"{v.key}: {v.label}" for v in variants_for(features)],
            "openvino": describe()}


def info(model: str | None = None) -> dict:
    """Everything `vggedge info` reports, JSON-ready (``model``: also its measured CPU variant tables)."""
    data = {"machine": machine(), "packages": versions(), "backends": availability(), "cpu": cpu_path()}
    if model is not None:  # openvino: tuned tables
        from ..runtime.tune import table_for

        data["tuned"] = {"model": model, "tables": [t.to_json() for t in table_for(model)]}
    return data


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
    lines += [f"  {i + 1}. {v}" for i, v in enumerate(data["cpu"]["variants"])]
    from ..runtime.openvino_ep import format_description  # openvino: plugin and tuned tables
    from ..runtime.tune import TuneResult, format_table

    lines += format_description(data["cpu"]["openvino"])
    if "tuned" in data:
        tables = [TuneResult.from_json(t) for t in data["tuned"]["tables"]]
        lines.append(f"tuned CPU variants of {data['tuned']['model']}: " + ("" if tables else "none yet (run `vggedge tune`)"))
        lines += [line for t in tables for line in format_table(t)]
    return "\n".join(lines)
