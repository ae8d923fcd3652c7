"""What this machine is, for reports and cache keys: the CPU's model name and installed package versions."""
from __future__ import annotations

import importlib.metadata
import platform
from pathlib import Path
from typing import Iterable


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_name(cpuinfo: str | None = None) -> str:
    """The CPU model name (/proc/cpuinfo "model name", or "Hardware"/"Model" on ARM boards), else what
    ``platform`` knows."""
    text = _cpuinfo() if cpuinfo is None else cpuinfo
    for key in ("model name", "Hardware", "Model"):
        for line in text.splitlines():
            name, _, value = line.partition(":")
            if name.strip() == key and value.strip():
                return value.strip()
    return platform.processor() or platform.machine() or "unknown"


def package_versions(names: Iterable[str]) -> dict[str, str | None]:
    """The installed version of each package, None when it is absent."""
    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found
