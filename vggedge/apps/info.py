"""`vggedge info`: versions, and which backends can run here (and why not)."""
from __future__ import annotations

import importlib.metadata
import platform

from ..runtime.select import availability

PACKAGES = ("vggedge", "numpy", "onnx", "onnxruntime", "onnxruntime-gpu", "opencv-python-headless",
            "opencv-python", "h5py", "torch", "tensorrt", "pycuda")


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
    return {"features": asdict(features), "variants": [f"{v.key}: {v.label}" for v in variants_for(features)]}


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
    lines += [f"  {i + 1}. {v}" for i, v in enumerate(data["cpu"]["variants"])]
    return "\n".join(lines)
