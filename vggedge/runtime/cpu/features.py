"""What this machine's CPU can do that matters for VGG16 inference (read from /proc/cpuinfo)."""
from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

from . import openvino_ep


@dataclass(frozen=True)
class CpuFeatures:
    """What the CPU can do that matters for VGG16 inference."""

    arch: str = "x86_64"
    cores: int = 1
    avx2: bool = False
    avx512: bool = False
    vnni: bool = False  # x86 AVX512-VNNI / AVX-VNNI, or ARM dot product (int8 dot instructions)
    bf16: bool = False  # AVX512_BF16 / AMX-BF16, or ARM BF16
    amx: bool = False
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    openvino_plugin: bool = False  # the onnxruntime-ep-openvino plugin offers a CPU device here

    @property
    def x86(self) -> bool:
        return self.arch in ("x86_64", "amd64", "i686")


def parse_cpuinfo(text: str, arch: str, cores: int, providers: tuple[str, ...]) -> CpuFeatures:
    """Features from /proc/cpuinfo text (x86 ``flags`` or ARM ``Features``); testable with fakes."""
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags |= set(value.split())
    x86 = arch in ("x86_64", "amd64", "i686")
    vnni = bool({"avx512_vnni", "avx_vnni", "amx_int8"} & flags) if x86 else bool({"asimddp", "i8mm"} & flags)
    bf16 = bool({"avx512_bf16", "amx_bf16"} & flags) if x86 else "bf16" in flags
    return CpuFeatures(arch=arch, cores=cores, avx2="avx2" in flags, avx512="avx512f" in flags, vnni=vnni,
                       bf16=bf16, amx=bool({"amx_int8", "amx_bf16"} & flags), providers=providers)


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_features() -> CpuFeatures:
    """Detect this machine's features, onnxruntime's providers and the OpenVINO plugin (registered
    here, once per process, when it is installed on x86)."""
    import dataclasses

    import onnxruntime as ort

    arch = platform.machine().lower()
    features = parse_cpuinfo(_cpuinfo(), arch, os.cpu_count() or 1, tuple(ort.get_available_providers()))
    if features.x86 and openvino_ep.installed():
        features = dataclasses.replace(features, openvino_plugin=openvino_ep.status().usable)
    return features
