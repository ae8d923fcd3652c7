"""The CPU configurations ("variants") this machine can run, their files beside the FP32 model,
and an inactive runner for each."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from ... import env
from ...catalogue import stale_reason, variant_file
from ...errors import BackendUnavailable, ConfigError
from ..base import Runner, RunnerOptions
from ..ort import OrtOptions
from ..plan import load_object
from . import features as _features
from .features import CpuFeatures
from .openvino_ep import OpenVinoOptions

log = logging.getLogger(__name__)
OPENVINO_EP = "OpenVINOExecutionProvider"


@dataclass(frozen=True)
class CpuVariant:
    """One runnable CPU configuration: which model file, which provider, which session settings."""

    key: str
    label: str
    precision: str
    model: str  # "fp32" | "tensorrt" | "cpu" | "cpu-rr": the file variant (see module docstring)
    options: OrtOptions = field(default_factory=OrtOptions)
    #: run a batch as calls of at most this many rows (the measured best micro-batch; None: whole batches)
    micro_batch: int | None = None
    #: "ort" (onnxruntime, ``options``) or "openvino" (OpenVINO itself, openvino_native.py)
    engine: str = "ort"
    #: OpenVINO's INFERENCE_PRECISION_HINT for the "openvino" engine
    inference_precision: str = "f32"


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


def _native_variants(features: CpuFeatures) -> list[CpuVariant]:
    """OpenVINO itself (any vendor): INT8 Q/DQ (not where U8S8 products can saturate: x86 without VNNI),
    FP32, and the FP32 file in bfloat16 where the CPU has bf16."""
    if not features.openvino_native:
        return []
    out = []
    if not features.u8s8_saturates:
        out.append(CpuVariant("ov-native-int8", "INT8 Q/DQ on OpenVINO (native)", "int8", "tensorrt",
                              _ort_options(features), engine="openvino"))
    if features.bf16:
        out.append(CpuVariant("ov-native-bf16", "FP32 file in bfloat16 on OpenVINO (native)", "bf16", "fp32",
                              _ort_options(features), engine="openvino", inference_precision="bf16"))
    out.append(CpuVariant("ov-native-fp32", "FP32 on OpenVINO (native)", "fp32", "fp32", _ort_options(features),
                          engine="openvino"))
    return out


def variants_for(features: CpuFeatures) -> list[CpuVariant]:
    """Every configuration this CPU can run, in feature-detection order (expected fastest first)."""
    openvino = _openvino_variants(features)
    native = _native_variants(features)
    native_int8 = [v for v in native if v.precision == "int8"]  # x86: only where VNNI keeps U8S8 exact
    out = [v for v in openvino if v.key == "ov-int8"]
    if features.x86:  # OpenVINO's INT8 beats onnxruntime's: 3-4x on AMX (issue 22), 1.1-1.2x on Zen 4
        out += native_int8  # (benchmarks/results/cpu-engines-zen4-2026-12-06.md)
    bf16 = [v for v in openvino if v.key == "ov-bf16"]
    if features.amx:  # bf16 matrix units: the bf16 variant beats plain-provider INT8 (issue 12's table)
        out += bf16
    int8_model = "cpu" if (features.vnni or not features.x86) else "cpu-rr"
    out.append(CpuVariant("int8", f"INT8 Q/DQ ({int8_model} style) on onnxruntime CPU", "int8", int8_model,
                          _ort_options(features)))
    if not features.u8s8_saturates:  # without VNNI its U8S8 kernels saturate (saturation.py): never chosen there
        out.append(CpuVariant("int8-trt", "INT8 Q/DQ (TensorRT style) on onnxruntime CPU", "int8", "tensorrt",
                              _ort_options(features)))
    if not features.amx:
        out += bf16
    if not features.x86:  # Arm: not measured against onnxruntime's dot-product kernels; after them
        out += native_int8
    out += [v for v in native if v.precision != "int8"]
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


#: the file each CPU file style runs (catalogue tags; "" is the FP32 model itself)
STYLE_TAGS = {"fp32": "", "tensorrt": "int8", "cpu": "int8-cpu", "cpu-rr": "int8-cpu-rr"}


def variant_path(fp32: str | Path, model: str) -> Path:
    """The file of a CPU file style (``CpuVariant.model``) beside the FP32 model."""
    return variant_file(fp32, STYLE_TAGS[model])


def prepare_variants(fp32: str | Path, calib: str | Path, *, features: CpuFeatures | None = None,
                     method: str = "minmax") -> dict[str, Path]:
    """Write the INT8 files the CPU variants need (calibration is cached); returns model -> path."""
    from ...precision.int8 import STYLES, quantize_int8

    features = features or _features.cpu_features()
    written: dict[str, Path] = {}
    for variant in variants_for(features):
        path = variant_path(fp32, variant.model)
        if variant.model not in written and current_variant(fp32, variant.model) is None:
            quantize_int8(fp32, calib, path, method=method, style=STYLES[variant.model])  # missing or stale
        written[variant.model] = path
    return written


def current_variant(fp32: str | Path, model: str) -> Path | None:
    """The variant's file when it exists and was written from this FP32 model; a stale one is reported, not used."""
    path = variant_path(fp32, model)
    if not path.is_file():
        return None
    stale = stale_reason(path, fp32)
    if stale:
        log.warning("not using %s: %s", path.name, stale)
        return None
    return path


def threaded(options: OrtOptions, runner_options: RunnerOptions) -> OrtOptions:
    """The tuned session settings with the user's thread count, when given."""
    if runner_options.threads is None:
        return options
    import dataclasses

    openvino = options.openvino and dataclasses.replace(options.openvino, threads=runner_options.threads)
    return dataclasses.replace(options, intra_op_threads=runner_options.threads, openvino=openvino)


def variant_runner_options(variant: CpuVariant, runner_options: RunnerOptions) -> RunnerOptions:
    """The app's runner options with the variant's measured micro-batch (the user's own setting wins)."""
    import dataclasses

    if variant.micro_batch is None or runner_options.micro_batch is not None:
        return runner_options
    if variant.micro_batch >= runner_options.max_batch:
        return runner_options
    return dataclasses.replace(runner_options, micro_batch=variant.micro_batch)


def runner_for(variant: CpuVariant, model_dir_or_fp32: str | Path,
               runner_options: RunnerOptions | None = None, *, evaluation: str | None = None) -> Runner:
    """An (inactive) runner for a variant (onnxruntime, or OpenVINO itself), given the FP32 model or its folder."""
    fp32 = Path(model_dir_or_fp32)
    if fp32.is_dir():
        fp32 = fp32 / "vgg16.onnx"
    path = variant_path(fp32, variant.model)
    if current_variant(fp32, variant.model) is None:
        raise BackendUnavailable(f"{path}: the {variant.key} CPU variant needs this file, written from {fp32}; "
                                 "write it with "
                                 f"`vggedge build --model {fp32} --precision int8` or prepare_variants()")
    runner_path, kwargs, runner_options = variant_runner(variant, runner_options or RunnerOptions(), evaluation)
    return load_object(runner_path)(path, runner_options=runner_options, **kwargs)


def variant_runner(variant: CpuVariant, runner_options: RunnerOptions, evaluation: str | None = None
                   ) -> tuple[str, dict, RunnerOptions]:
    """How a variant runs: its runner class ("module:Class"), the class's keyword options, and the runner
    options with the variant's measured micro-batch (onnxruntime, or OpenVINO itself)."""
    runner_options = variant_runner_options(variant, runner_options)
    if variant.engine == "openvino":
        return ("vggedge.runtime.cpu.openvino_native:OpenVinoRunner",
                {"inference_precision": variant.inference_precision, "variant": variant.key,
                 "evaluation": "OpenVINO CPU (native)"}, runner_options)
    return ("vggedge.runtime.ort:OrtRunner", {"options": threaded(variant.options, runner_options),
                                              "variant": variant.key, "evaluation": evaluation}, runner_options)
