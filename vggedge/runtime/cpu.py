"""The CPU configurations ("variants") this machine can run, and the ``ort-cpu`` runner factory.

Which file serves which runtime:
- ``<stem>.int8.onnx`` (TensorRT-style Q/DQ: symmetric int8) runs on TensorRT, on
  onnxruntime's OpenVINO execution provider and on the plain CPU provider;
- ``<stem>.int8-cpu.onnx`` (uint8 asymmetric activations, int8 per-channel weights)
  is the plain CPU provider's faster INT8 file; ``int8-cpu-rr`` adds reduce_range
  for x86 CPUs without VNNI, whose u8*s8 instructions can saturate;
- ``<stem>.onnx`` (FP32) is the fallback everywhere, and the ``ov-bf16`` variant's
  file (OpenVINO runs it in bfloat16 on CPUs with bf16 instructions).

Everything runs inside onnxruntime. OpenVINO comes either as the plugin EP
(``pip install 'vggedge[openvino]'``, see runtime/openvino_ep.py) or, as before,
as the full ``onnxruntime-openvino`` build.

With ``precision="auto"`` the variant is, in order: the user's override
(``variant=`` or ``VGGEDGE_CPU_VARIANT``); the winner measured once per machine
and model by runtime/tune.py (unless ``VGGEDGE_TUNE=0``); else the
feature-detection order of :func:`variants_for`.
"""
from __future__ import annotations

import logging
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

from .. import env
from ..errors import BackendUnavailable, ConfigError, VggEdgeError
from ..spec import load_spec_for, spec_path_for
from . import openvino_ep
from .base import RunnerOptions
from .openvino_ep import OpenVinoOptions
from .ort import OrtOptions, OrtRunner

log = logging.getLogger(__name__)
OPENVINO_EP = "OpenVINOExecutionProvider"


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


def cpu_model_name() -> str:
    """The CPU model name (/proc/cpuinfo "model name", or "Hardware"/"Model" on ARM boards)."""
    for key in ("model name", "Hardware", "Model"):
        for line in _cpuinfo().splitlines():
            name, _, value = line.partition(":")
            if name.strip() == key and value.strip():
                return value.strip()
    return platform.processor() or platform.machine() or "unknown"


@dataclass(frozen=True)
class CpuVariant:
    """One runnable CPU configuration: which model file, which provider, which session settings."""

    key: str
    label: str
    precision: str
    model: str  # "fp32" | "tensorrt" | "cpu" | "cpu-rr": the file variant (see module docstring)
    options: OrtOptions = field(default_factory=OrtOptions)


def _ort_options(features: CpuFeatures, providers: tuple = ("CPUExecutionProvider",),
                 openvino: OpenVinoOptions | None = None) -> OrtOptions:
    return OrtOptions(intra_op_threads=features.cores, inter_op_threads=1, allow_spinning=True,
                      graph_optimization="all", providers=providers, openvino=openvino)


def _openvino_variants(features: CpuFeatures) -> list[CpuVariant]:
    """The plugin EP's variants (INT8 file; FP32 file in bf16 where the CPU has bf16), else the full
    build's INT8 variant. LATENCY hint, OpenVINO's own threads/streams: what measured best
    (benchmarks/results/openvino-options.md)."""
    if not features.x86:
        return []
    if features.openvino_plugin:
        out = [CpuVariant("ov-int8", "INT8 Q/DQ on the OpenVINO plugin EP", "int8", "tensorrt",
                          _ort_options(features, openvino=OpenVinoOptions("LATENCY")))]
        if features.bf16:
            out.append(CpuVariant("ov-bf16", "FP32 file in bfloat16 on the OpenVINO plugin EP", "bf16", "fp32",
                                  _ort_options(features, openvino=OpenVinoOptions("LATENCY", "bf16"))))
        return out
    if OPENVINO_EP in features.providers:
        ov = (OPENVINO_EP, OpenVinoOptions(threads=features.cores).build_options()), "CPUExecutionProvider"
        return [CpuVariant("ov-int8", "INT8 Q/DQ on onnxruntime's OpenVINO EP (full build)", "int8", "tensorrt",
                           _ort_options(features, ov))]
    return []


def variants_for(features: CpuFeatures) -> list[CpuVariant]:
    """Every configuration this CPU can run, in feature-detection order (expected fastest first)."""
    openvino = _openvino_variants(features)
    out = [v for v in openvino if v.key == "ov-int8"]
    bf16 = [v for v in openvino if v.key == "ov-bf16"]
    if features.amx:  # bf16 matrix units: the bf16 variant beats plain-provider INT8 (issue 12's table)
        out += bf16
    int8_model = "cpu" if (features.vnni or not features.x86) else "cpu-rr"
    out.append(CpuVariant("int8", f"INT8 Q/DQ ({int8_model} style) on onnxruntime CPU", "int8", int8_model,
                          _ort_options(features)))
    out.append(CpuVariant("int8-trt", "INT8 Q/DQ (TensorRT style) on onnxruntime CPU", "int8", "tensorrt",
                          _ort_options(features)))
    if not features.amx:
        out += bf16
    out.append(CpuVariant("fp32", "FP32 on onnxruntime CPU, tuned session", "fp32", "fp32", _ort_options(features)))
    return out


def choose(features: CpuFeatures, override: str | None = None) -> CpuVariant:
    """The fastest variant, or the one named by ``override`` (``VGGEDGE_CPU_VARIANT`` also works)."""
    variants = variants_for(features)
    wanted = override or env.cpu_variant()
    if not wanted:
        return variants[0]
    for variant in variants:
        if variant.key == wanted:
            return variant
    raise ConfigError(f"CPU variant {wanted!r} is not available here; choose one of {[v.key for v in variants]}")


def variant_path(fp32: str | Path, model: str) -> Path:
    """The file of a model variant beside the FP32 model."""
    fp32 = Path(fp32)
    if model == "fp32":
        return fp32
    suffix = "int8" if model == "tensorrt" else f"int8-{model}"
    return fp32.with_name(f"{fp32.stem}.{suffix}.onnx")


def prepare_variants(fp32: str | Path, calib: str | Path, *, features: CpuFeatures | None = None,
                     method: str = "minmax") -> dict[str, Path]:
    """Write the INT8 files the CPU variants need (calibration is cached); returns model -> path."""
    from ..precision.int8 import STYLES, quantize_int8

    features = features or cpu_features()
    written: dict[str, Path] = {}
    for variant in variants_for(features):
        path = variant_path(fp32, variant.model)
        if variant.model not in written and current_variant(fp32, variant.model) is None:
            quantize_int8(fp32, calib, path, method=method, style=STYLES[variant.model])  # missing or stale
        written[variant.model] = path
    return written


def cpu_runner(model: str | Path | bytes, runner_options: RunnerOptions | None = None, *,
               precision: str = "as-given", variant: str | None = None,
               ort_options: OrtOptions | None = None) -> OrtRunner:
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
    features = cpu_features()
    if precision == "auto" and not isinstance(model, bytes):
        chosen = auto_variant(model, features, variant, runner_options)
        if chosen is not None:
            return OrtRunner(chosen[1], _threaded(chosen[0].options, runner_options), runner_options)
    # The spec says what the file holds; a bare ONNX file (no sidecar) keeps the plain tuned session.
    quantized = (not isinstance(model, bytes) and spec_path_for(model).exists()
                 and load_spec_for(model).precision == "int8")
    variants = variants_for(features)
    tuned = next((v for v in variants if v.key == ("ov-int8" if quantized else "fp32")), variants[-1])
    return OrtRunner(model, _threaded(tuned.options, runner_options), runner_options)


def current_variant(fp32: str | Path, model: str) -> Path | None:
    """The variant's file when it exists and was written from this FP32 model; a stale one is reported, not used."""
    from ..engine.registry import stale_reason

    path = variant_path(fp32, model)
    if not path.is_file():
        return None
    stale = stale_reason(path, fp32)
    if stale:
        log.warning("not using %s: %s", path.name, stale)
        return None
    return path


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
        from .tune import tuned_variant

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


def _threaded(options: OrtOptions, runner_options: RunnerOptions) -> OrtOptions:
    """The tuned session settings with the user's thread count, when given."""
    if runner_options.threads is None:
        return options
    import dataclasses

    openvino = options.openvino and dataclasses.replace(options.openvino, threads=runner_options.threads)
    return dataclasses.replace(options, intra_op_threads=runner_options.threads, openvino=openvino)


def runner_for(variant: CpuVariant, model_dir_or_fp32: str | Path,
               runner_options: RunnerOptions | None = None) -> OrtRunner:
    """An (inactive) onnxruntime runner for a variant, given the FP32 model or its folder."""
    fp32 = Path(model_dir_or_fp32)
    if fp32.is_dir():
        fp32 = fp32 / "vgg16.onnx"
    path = variant_path(fp32, variant.model)
    if current_variant(fp32, variant.model) is None:
        raise BackendUnavailable(f"{path}: the {variant.key} CPU variant needs this file, written from {fp32}; "
                                 "write it with "
                                 f"`vggedge build --model {fp32} --precision int8` or prepare_variants()")
    runner_options = runner_options or RunnerOptions()
    return OrtRunner(path, _threaded(variant.options, runner_options), runner_options)
