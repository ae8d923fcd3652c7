"""CPU configuration choice by feature detection, with the features faked (no speed asserted)."""
from __future__ import annotations

from pathlib import Path

import pytest

from vggedge.errors import BackendUnavailable, ConfigError
from vggedge.model.export import export_vgg16
from vggedge.model.vgg16 import VGG16Options
from vggedge.runtime.base import RunnerOptions
from vggedge.runtime.plan import PlanRequest
from vggedge.runtime.select import select_runner
from vggedge.runtime.cpu import features as cpuf, variants as cpuv, planner as cpup

ZEN4 = "flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512_bf16 avx512_vnni\n"
HASWELL = "flags\t\t: fpu sse2 avx avx2 fma\n"
SAPPHIRE = "flags\t\t: avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_int8 amx_tile\n"
ORIN = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\n"
NANO = "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32\n"
CPU_ONLY = ("CPUExecutionProvider",)
WITH_OV = ("OpenVINOExecutionProvider", "CPUExecutionProvider")

def cpu_plan(model, options=None, *, precision="as-given", **kwargs):
    """The ort-cpu planner hook's choice (file, runner options) for a model."""
    return cpup.plan_cpu(PlanRequest(Path(model), precision, options or RunnerOptions()), **kwargs)



@pytest.mark.parametrize("text, arch, expected", [
    (ZEN4, "x86_64", dict(avx2=True, avx512=True, vnni=True, bf16=True, amx=False)),
    (HASWELL, "x86_64", dict(avx2=True, avx512=False, vnni=False, bf16=False, amx=False)),
    (SAPPHIRE, "x86_64", dict(vnni=True, bf16=True, amx=True)),
    (ORIN, "aarch64", dict(avx2=False, vnni=True, bf16=False)),
    (NANO, "aarch64", dict(vnni=False, bf16=False)),
    ("", "x86_64", dict(avx2=False, vnni=False)),
])
def test_parse_cpuinfo(text, arch, expected):
    features = cpuf.parse_cpuinfo(text, arch, 2, CPU_ONLY)
    for key, value in expected.items():
        assert getattr(features, key) == value, key


ALDER = "flags\t\t: avx2 avx_vnni\n"
#: numpy's CPUID probe on an AVX2-only CPU (Zen 3, or qemu-x86_64 -cpu EPYC-Milan), and on Sapphire Rapids
CPUID_AVX2 = {"AVX2": True, "AVX512F": False, "AVX512VNNI": False, "AVX512BF16": False}
CPUID_SPR = {"AVX2": True, "AVX512F": True, "AVX512VNNI": True, "AVX512BF16": True}


@pytest.mark.parametrize("text, cpuid, expected", [
    # the kernel and CPUID agree: nothing changes
    (SAPPHIRE, CPUID_SPR, dict(amx=True, vnni=True, bf16=True, u8s8_saturates=False)),
    (HASWELL, CPUID_AVX2, dict(avx2=True, vnni=False, u8s8_saturates=True)),
    (ALDER, CPUID_AVX2, dict(avx_vnni=True, vnni=True, u8s8_saturates=False)),
    # emulated Zen 3 on a Sapphire Rapids host: cpuinfo is the host's, the kernels run are the emulated CPU's
    (SAPPHIRE, CPUID_AVX2, dict(avx2=True, avx512=False, amx=False, vnni=False, bf16=False, u8s8_saturates=True)),
    (SAPPHIRE + "flags : avx_vnni\n", CPUID_AVX2, dict(avx_vnni=False, vnni=False, u8s8_saturates=True)),
    # no probe (numpy without it): cpuinfo stands
    (SAPPHIRE, None, dict(amx=True, vnni=True)),
])
def test_cpuid_view_wins_over_cpuinfo(text, cpuid, expected):
    features = cpuf.visible_to_process(cpuf.parse_cpuinfo(text, "x86_64", 2, CPU_ONLY), cpuid)
    for key, value in expected.items():
        assert getattr(features, key) == value, key
    assert ("can saturate" in features.isa) == features.u8s8_saturates


def test_this_machines_cpuid_view_confirms_its_cpuinfo():
    """On real hardware (no emulation) the two views agree: detection is the cpuinfo parse."""
    import os
    import platform

    import onnxruntime as ort

    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("x86 only")
    parsed = cpuf.parse_cpuinfo(cpuf._cpuinfo(), "x86_64", os.cpu_count() or 1, tuple(ort.get_available_providers()))
    assert cpuf.visible_to_process(parsed, cpuf._cpuid()) == parsed


def keys(text, arch, providers=CPU_ONLY):
    return [v.key for v in cpuv.variants_for(cpuf.parse_cpuinfo(text, arch, 4, providers))]


def test_openvino_ep_first_when_installed_on_x86():
    assert keys(ZEN4, "x86_64", WITH_OV)[0] == "ov-int8"
    ov = cpuv.variants_for(cpuf.parse_cpuinfo(ZEN4, "x86_64", 4, WITH_OV))[0]
    assert ov.options.providers[0][0] == "OpenVINOExecutionProvider"
    assert ov.options.providers[0][1]["num_of_threads"] == "4" and ov.model == "tensorrt"
    assert ov.options.providers[-1] == "CPUExecutionProvider"  # the plain provider stays the fallback


def test_jetson_arm_uses_plain_onnxruntime():
    """ARM boards: never the OpenVINO EP, INT8 with dot-product instructions, FP32 last."""
    assert keys(ORIN, "aarch64", WITH_OV) == ["int8", "int8-trt", "fp32"]
    variants = cpuv.variants_for(cpuf.parse_cpuinfo(NANO, "aarch64", 4, CPU_ONLY))
    assert variants[0].model == "cpu" and all(v.options.providers == ("CPUExecutionProvider",) for v in variants)


def test_x86_without_vnni_uses_reduce_range():
    assert cpuv.variants_for(cpuf.parse_cpuinfo(HASWELL, "x86_64", 2, CPU_ONLY))[0].model == "cpu-rr"
    assert cpuv.variants_for(cpuf.parse_cpuinfo(ZEN4, "x86_64", 2, CPU_ONLY))[0].model == "cpu"


def test_threads_follow_cores():
    for variant in cpuv.variants_for(cpuf.parse_cpuinfo(ZEN4, "x86_64", 6, CPU_ONLY)):
        assert variant.options.intra_op_threads == 6 and variant.options.inter_op_threads == 1


def test_override(monkeypatch):
    features = cpuf.parse_cpuinfo(ZEN4, "x86_64", 2, CPU_ONLY)
    assert cpuv.choose(features).key == "int8"
    assert cpuv.choose(features, "fp32").key == "fp32"
    monkeypatch.setenv("VGGEDGE_CPU_VARIANT", "int8-trt")
    assert cpuv.choose(features).key == "int8-trt"
    with pytest.raises(ConfigError, match=r"'ov-int8' is not available here; choose one of \['int8', 'int8-trt', 'fp32'\]"):
        cpuv.choose(features, "ov-int8")


def test_variant_paths(tmp_path):
    fp32 = tmp_path / "vgg16.onnx"
    assert cpuv.variant_path(fp32, "fp32") == fp32
    assert cpuv.variant_path(fp32, "tensorrt").name == "vgg16.int8.onnx"
    assert cpuv.variant_path(fp32, "cpu").name == "vgg16.int8-cpu.onnx"
    assert cpuv.variant_path(fp32, "cpu-rr").name == "vgg16.int8-cpu-rr.onnx"


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    path = tmp_path_factory.mktemp("cpu") / "vgg16.onnx"
    opts = VGG16Options(include_rescaling=False, include_top=True, num_classes=10, input_shape=(32, 32, 3))
    return export_vgg16("random:4", path, opts).onnx_path


def test_runner_for_missing_variant_says_how_to_build(small):
    variant = cpuv.choose(cpuf.parse_cpuinfo(ZEN4, "x86_64", 2, CPU_ONLY))
    with pytest.raises(BackendUnavailable, match=r"vgg16\.int8-cpu\.onnx: .*vggedge build"):
        cpuv.runner_for(variant, small)


def test_auto_precision_picks_best_existing_file(small, monkeypatch):
    monkeypatch.setattr(cpuf, "cpu_features", lambda: cpuf.parse_cpuinfo(ZEN4, "x86_64", 2, CPU_ONLY))
    assert cpu_plan(small, precision="auto").artefact == small  # no INT8 file yet: FP32
    written = cpuv.prepare_variants(small, "calib", features=cpuf.parse_cpuinfo(ZEN4, "x86_64", 2, CPU_ONLY))
    assert set(written) == {"cpu", "tensorrt", "fp32"} and all(p.exists() for p in written.values())
    chosen = select_runner(small, "ort-cpu", precision="auto")
    assert chosen.artefact == chosen.runner.model == written["cpu"]
    assert chosen.spec.precision == "int8" and chosen.why.startswith("vgg16.int8-cpu.onnx: CPU variant int8 (")
    with chosen.runner as runner:
        assert runner.providers()[0] == "CPUExecutionProvider"


def test_openvino_ep_follows_the_spec_not_the_file_name(tmp_path, monkeypatch):
    """An INT8 model (by its spec) gets the OpenVINO EP when installed, whatever its file is called."""
    from vggedge.spec import ModelSpec, spec_path_for

    monkeypatch.setattr(cpuf, "cpu_features", lambda: cpuf.parse_cpuinfo(ZEN4, "x86_64", 2, WITH_OV))
    quantized, plain = tmp_path / "mine.onnx", tmp_path / "other.int8.onnx"
    ModelSpec(precision="int8").save(spec_path_for(quantized))
    ModelSpec(precision="fp32").save(spec_path_for(plain))
    assert cpu_plan(quantized).kwargs["options"].providers[0][0] == "OpenVINOExecutionProvider"
    assert cpu_plan(plain).kwargs["options"].providers == ("CPUExecutionProvider",)
