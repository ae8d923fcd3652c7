"""What this machine's CPU can do that matters for VGG16 inference (/proc/cpuinfo, checked against CPUID)."""
from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

from . import openvino_ep, openvino_native


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
    avx512_vnni: bool = False
    avx_vnni: bool = False  # the VEX-coded (AVX2-width) VNNI of Alder Lake, Sapphire Rapids, Zen 5
    arm_dot: bool = False  # ARM ``asimddp`` (SDOT/UDOT) or ``i8mm``
    openvino_native: bool = False  # the ``openvino`` package is installed (any vendor: openvino_native.py)

    @property
    def x86(self) -> bool:
        return self.arch in ("x86_64", "amd64", "i686")

    @property
    def u8s8_saturates(self) -> bool:
        """True where onnxruntime's x86 U8S8 kernels can saturate: AVX2/AVX-512 without VNNI, whose
        ``VPMADDUBSW`` adds pairs of u8*s8 products into 16 bits (onnxruntime's quantization docs). Every
        Q/DQ file not written with reduce_range (the TensorRT-style file included) can lose accuracy there."""
        return self.x86 and not self.vnni

    @property
    def isa(self) -> str:
        """One line: the instruction sets that decide INT8 speed and accuracy here."""
        if not self.x86:
            dot = "dot-product (asimddp/i8mm)" if self.arm_dot else "no int8 dot-product"
            return f"{self.arch}: NEON, {dot}" + (", BF16" if self.bf16 else "")
        if self.amx:
            parts = ["AMX", "AVX-512 VNNI" if self.avx512_vnni else "AVX-VNNI"]
        elif self.avx512:
            parts = ["AVX-512", "VNNI" if self.vnni else "no VNNI"]
        elif self.avx2:
            parts = ["AVX2 only" if not self.vnni else "AVX2", "AVX-VNNI" if self.vnni else "no VNNI"]
        else:
            parts = ["SSE only", "no VNNI"]
        if self.bf16:
            parts.append("BF16")
        note = "; U8S8 int8 kernels can saturate (16-bit VPMADDUBSW sums)" if self.u8s8_saturates else ""
        return f"x86-64: {', '.join(parts)}{note}"


def parse_cpuinfo(text: str, arch: str, cores: int, providers: tuple[str, ...]) -> CpuFeatures:
    """Features from /proc/cpuinfo text (x86 ``flags`` or ARM ``Features``); testable with fakes."""
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags |= set(value.split())
    x86 = arch in ("x86_64", "amd64", "i686")
    arm_dot = not x86 and bool({"asimddp", "i8mm"} & flags)
    vnni = bool({"avx512_vnni", "avx_vnni", "amx_int8"} & flags) if x86 else arm_dot
    bf16 = bool({"avx512_bf16", "amx_bf16"} & flags) if x86 else "bf16" in flags
    return CpuFeatures(arch=arch, cores=cores, avx2=x86 and "avx2" in flags, avx512=x86 and "avx512f" in flags,
                       vnni=vnni, bf16=bf16, amx=x86 and bool({"amx_int8", "amx_bf16"} & flags), providers=providers,
                       avx512_vnni=x86 and "avx512_vnni" in flags, avx_vnni=x86 and "avx_vnni" in flags,
                       arm_dot=arm_dot)


def visible_to_process(features: CpuFeatures, cpuid: dict[str, bool] | None) -> CpuFeatures:
    """``features`` less what this process's CPUID view lacks (numpy's runtime dispatch table).

    /proc/cpuinfo is the kernel's view; libraries dispatch on CPUID. They differ under user-mode
    emulation (``qemu-x86_64 -cpu EPYC-Milan``, Rosetta), where cpuinfo is the host's: onnxruntime
    then runs the kernels of the emulated CPU, so that is what counts. numpy does not probe AVX-VNNI
    or AMX: they are kept only while CPUID confirms everything it does probe (else the cpuinfo view
    is not this process's, and assuming less is the safe side: the reduce-range INT8 file).
    """
    import dataclasses

    if not features.x86 or not cpuid or "AVX2" not in cpuid:
        return features
    avx2, avx512 = features.avx2 and cpuid.get("AVX2", False), features.avx512 and cpuid.get("AVX512F", False)
    avx512_vnni = features.avx512_vnni and avx512 and cpuid.get("AVX512VNNI", False)
    masked = (avx2, avx512, avx512_vnni) != (features.avx2, features.avx512, features.avx512_vnni)
    avx_vnni, amx = features.avx_vnni and avx2 and not masked, features.amx and avx512 and not masked
    vnni = avx512_vnni or avx_vnni or amx
    bf16 = features.bf16 and (amx or (avx512 and cpuid.get("AVX512BF16", False)))
    return dataclasses.replace(features, avx2=avx2, avx512=avx512, avx512_vnni=avx512_vnni, avx_vnni=avx_vnni,
                               amx=amx, vnni=vnni, bf16=bf16)


def _cpuid() -> dict[str, bool] | None:
    try:  # numpy's own CPUID probe (private, so guarded): the instruction sets libraries dispatch on
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:
        return None
    return dict(__cpu_features__)


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
    features = visible_to_process(features, _cpuid())
    if features.x86 and openvino_ep.installed():
        features = dataclasses.replace(features, openvino_plugin=openvino_ep.status().usable)
    if openvino_native.installed():
        features = dataclasses.replace(features, openvino_native=True)
    return features
