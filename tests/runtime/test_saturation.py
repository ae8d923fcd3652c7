"""Issue 22: ISA detection from real /proc/cpuinfo lines, the no-saturation decisions they drive, and the
unfused Q/DQ evaluation checked against onnx's numpy reference evaluator (the same answer on every ISA)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from vggedge.machine import cpu_name
from vggedge.precision.int8 import CPU, CPU_NO_VNNI, TENSORRT, quantize_int8
from vggedge.runtime.cpu import features as cpuf, saturation, variants as cpuv
from vggedge.runtime.ort import OrtRunner

REPO = Path(__file__).resolve().parents[2]
CPU_ONLY = ("CPUExecutionProvider",)
# Real flag lines (trimmed of nothing that matters here): AMD EPYC 7763 (Zen 3), AMD EPYC 9R14 (Zen 4),
# Intel Xeon Sapphire Rapids (this project's session machine), AWS Graviton2 (Neoverse N1) and Graviton3 (V1).
ZEN3 = ("flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse "
        "sse2 ht syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl nonstop_tsc cpuid "
        "extd_apicid aperfmperf rapl pni pclmulqdq monitor ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt aes "
        "xsave avx f16c rdrand lahf_lm cmp_legacy svm extapic cr8_legacy abm sse4a misalignsse 3dnowprefetch osvw "
        "ibs skinit wdt tce topoext perfctr_core perfctr_nb bpext perfctr_llc mwaitx cpb cat_l3 cdp_l3 "
        "invpcid_single hw_pstate ssbd mba ibrs ibpb stibp vmmcall fsgsbase bmi1 avx2 smep bmi2 invpcid cqm rdt_a "
        "rdseed adx smap clflushopt clwb sha_ni xsaveopt xsavec xgetbv1 xsaves cqm_llc cqm_occup_llc cqm_mbm_total "
        "cqm_mbm_local clzero irperf xsaveerptr rdpru wbnoinvd amd_ppin brs arat npt lbrv svm_lock nrip_save "
        "tsc_scale vmcb_clean flushbyasid decodeassists pausefilter pfthreshold v_vmsave_vmload vgif v_spec_ctrl "
        "umip pku ospke vaes vpclmulqdq rdpid overflow_recov succor smca fsrm\n")
ZEN4 = ("flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse "
        "sse2 ht syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl nonstop_tsc cpuid "
        "extd_apicid aperfmperf tsc_known_freq pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt "
        "aes xsave avx f16c rdrand hypervisor lahf_lm cmp_legacy cr8_legacy abm sse4a misalignsse 3dnowprefetch "
        "topoext perfctr_core invpcid_single ssbd perfmon_v2 ibrs ibpb stibp ibrs_enhanced vmmcall fsgsbase bmi1 "
        "avx2 smep bmi2 invpcid avx512f avx512dq rdseed adx smap avx512ifma clflushopt clwb avx512cd sha_ni "
        "avx512bw avx512vl xsaveopt xsavec xgetbv1 xsaves avx512_bf16 clzero xsaveerptr rdpru wbnoinvd arat "
        "avx512vbmi pku ospke avx512_vbmi2 gfni vaes vpclmulqdq avx512_vnni avx512_bitalg avx512_vpopcntdq rdpid "
        "flush_l1d\n")
SAPPHIRE = ("flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse "
            "sse2 ss ht syscall nx pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology nonstop_tsc cpuid "
            "tsc_known_freq pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt tsc_deadline_timer "
            "aes xsave avx f16c rdrand hypervisor lahf_lm abm 3dnowprefetch cpuid_fault fsgsbase tsc_adjust bmi1 hle "
            "avx2 smep bmi2 erms invpcid rtm avx512f avx512dq rdseed adx smap avx512ifma clflushopt clwb avx512cd "
            "sha_ni avx512bw avx512vl xsaveopt xsavec xgetbv1 xsaves avx_vnni avx512_bf16 arat avx512vbmi umip "
            "avx512_vbmi2 gfni vaes vpclmulqdq avx512_vnni avx512_bitalg avx512_vpopcntdq rdpid cldemote movdiri "
            "movdir64b fsrm serialize tsxldtrk amx_bf16 avx512_fp16 amx_tile amx_int8 arch_capabilities\n")
GRAVITON2 = ("processor\t: 0\nBogoMIPS\t: 243.75\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics "
             "fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs\nCPU implementer\t: 0x41\n")
GRAVITON3 = ("processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid "
             "asimdrdm jscvt fcma lrcpc dcpop sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs "
             "paca pacg dcpodp svei8mm svebf16 i8mm bf16 dgh rng\n")

def cpu_runner(model, options=None, precision="as-given"):
    """The inactive runner the ort-cpu backend plans for a model (the planner hook, then its runner class)."""
    from vggedge.runtime.select import select_runner

    return select_runner(model, "ort-cpu", options=options, precision=precision).runner



def features(text: str, arch: str = "x86_64") -> cpuf.CpuFeatures:
    return cpuf.parse_cpuinfo(text, arch, 2, CPU_ONLY)


@pytest.mark.parametrize("text, arch, expected, isa", [
    (ZEN3, "x86_64", dict(avx2=True, avx512=False, vnni=False, amx=False, u8s8_saturates=True),
     "x86-64: AVX2 only, no VNNI; U8S8 int8 kernels can saturate (16-bit VPMADDUBSW sums)"),
    (ZEN4, "x86_64", dict(avx2=True, avx512=True, vnni=True, avx512_vnni=True, avx_vnni=False, bf16=True, amx=False,
                          u8s8_saturates=False), "x86-64: AVX-512, VNNI, BF16"),
    (SAPPHIRE, "x86_64", dict(avx512=True, vnni=True, avx512_vnni=True, avx_vnni=True, amx=True, bf16=True,
                              u8s8_saturates=False), "x86-64: AMX, AVX-512 VNNI, BF16"),
    (GRAVITON2, "aarch64", dict(avx2=False, avx512=False, vnni=True, arm_dot=True, bf16=False, u8s8_saturates=False),
     "aarch64: NEON, dot-product (asimddp/i8mm)"),
    (GRAVITON3, "aarch64", dict(vnni=True, arm_dot=True, bf16=True, amx=False, u8s8_saturates=False),
     "aarch64: NEON, dot-product (asimddp/i8mm), BF16"),
])
def test_isa_from_real_cpuinfo(text: str, arch: str, expected: dict, isa: str) -> None:
    found = features(text, arch)
    assert {key: getattr(found, key) for key in expected} == expected
    assert found.isa == isa


def test_this_machine_has_an_isa_line() -> None:
    found = cpuf.cpu_features()
    print(f"\nthis machine: {cpu_name()}: {found.isa}")
    assert found.isa.startswith(("x86-64: ", f"{found.arch}: "))


def test_zen3_never_offers_the_saturating_variants() -> None:
    zen3, zen4 = features(ZEN3), features(ZEN4)
    keys = [v.key for v in cpuv.variants_for(zen3)]
    assert "int8-trt" not in keys and keys[0] == "int8"
    assert cpuv.variants_for(zen3)[0].model == "cpu-rr"  # what auto runs there cannot saturate
    assert "int8-trt" in [v.key for v in cpuv.variants_for(zen4)]
    trt = next(v for v in cpuv.variants_for(zen4) if v.key == "int8-trt")
    assert saturation.saturation_note(zen4, trt) is None
    assert "saturate" in saturation.saturation_note(zen3, trt) and "int8-cpu-rr" in saturation.saturation_note(zen3, trt)
    assert saturation.saturation_note(zen3, cpuv.variants_for(zen3)[0]) is None  # the reduce-range file


@pytest.fixture(scope="module")
def qdq_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny net's TensorRT-style, CPU-style and reduce-range INT8 files (calibrated on calib/)."""
    from small_models import write_tiny_net

    folder = tmp_path_factory.mktemp("saturation")
    fp32 = write_tiny_net(folder / "tiny.onnx")
    out = {"fp32": fp32}
    for style in (TENSORRT, CPU, CPU_NO_VNNI):
        out[style.name] = quantize_int8(fp32, REPO / "calib", cpuv.variant_path(fp32, style.name),
                                        style=style, cache_dir=folder / "cache").path
    return out


def test_styles_are_read_from_the_sidecar(qdq_files: dict[str, Path]) -> None:
    assert {k: saturation.qdq_style(p) for k, p in qdq_files.items()} == {
        "fp32": None, "tensorrt": "tensorrt", "cpu": "cpu", "cpu-rr": "cpu-rr"}
    zen3 = features(ZEN3)
    assert [k for k, p in qdq_files.items() if saturation.saturates(p, zen3)] == ["tensorrt", "cpu"]
    assert not any(saturation.saturates(p, features(ZEN4)) for p in qdq_files.values())


def reference(path: Path, x: np.ndarray) -> np.ndarray:
    """onnx's numpy reference evaluator: DequantizeLinear, float Conv/Gemm, QuantizeLinear, as written.
    (It implements DequantizeLinear from opset 19 on; 19 means the same for int8/uint8 as 13.)"""
    from onnx.reference import ReferenceEvaluator

    model = onnx.load(str(path))
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            opset.version = max(opset.version, 19)
    return ReferenceEvaluator(model).run(None, {"images": x})[0]


@pytest.mark.parametrize("style", ["tensorrt", "cpu"])
def test_unfused_evaluation_is_fake_quant_in_float(qdq_files: dict[str, Path], style: str, tmp_path: Path) -> None:
    """No QLinearConv/ConvInteger/QGemm fusion (the saturating kernels), and numpy's answer to float rounding."""
    import onnxruntime as ort

    path = qdq_files[style]
    so = saturation.evaluation_options().session_options()
    so.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    ops = {n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node}
    assert {"Conv", "Gemm", "QuantizeLinear", "DequantizeLinear"} <= ops
    assert not ops & {"QLinearConv", "ConvInteger", "QGemm", "MatMulInteger", "QLinearMatMul"}

    x = np.random.default_rng(1).normal(0, 1, (6, 3, 32, 32)).astype(np.float32)
    with OrtRunner(path, saturation.evaluation_options()) as runner:
        got = runner.infer({"images": x})["predictions"]
    want = reference(path, x)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert (got.argmax(1) == want.argmax(1)).all()


def test_zen3_runs_the_tensorrt_file_unfused_and_says_so(qdq_files: dict[str, Path], monkeypatch,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    """`compare`, `classify --precision int8`, `bench`: the ort-cpu runner of a saturating file on a Zen 3."""
    monkeypatch.setattr(cpuf, "cpu_features", lambda: features(ZEN3))
    runner = cpu_runner(qdq_files["tensorrt"])
    assert runner.options.graph_optimization == "disable" and runner.evaluation == saturation.UNFUSED
    assert "tiny.int8.onnx: ran unfused" in runner.note and "AVX2 only, no VNNI" in runner.note
    x = np.random.default_rng(2).normal(0, 1, (3, 3, 32, 32)).astype(np.float32)
    with caplog.at_level("WARNING"), runner:
        got = runner.infer({"images": x})["predictions"]
    assert [r.message for r in caplog.records if "ran unfused" in r.message] == [runner.note]
    assert runner.report()["evaluation"] == saturation.UNFUSED
    np.testing.assert_allclose(got, reference(qdq_files["tensorrt"], x), atol=1e-5)
    rr = cpu_runner(qdq_files["cpu-rr"])  # reduce-range: the fused kernels cannot saturate
    assert rr.note is None and rr.options.graph_optimization == "all"
    monkeypatch.setattr(cpuf, "cpu_features", lambda: features(ZEN4))
    vnni = cpu_runner(qdq_files["tensorrt"])
    assert vnni.note is None and vnni.options.graph_optimization == "all"
    assert vnni.evaluation == "onnxruntime CPU kernels, VNNI"


def test_zen3_auto_runs_reduce_range(qdq_files: dict[str, Path], monkeypatch) -> None:
    monkeypatch.setattr(cpuf, "cpu_features", lambda: features(ZEN3))
    runner = cpu_runner(qdq_files["fp32"], precision="auto")
    assert Path(runner.model).name == "tiny.int8-cpu-rr.onnx" and runner.variant == "int8" and runner.note is None


def test_a_users_own_qdq_onnx_is_guarded_too(qdq_files: dict[str, Path], tmp_path: Path, monkeypatch) -> None:
    """A Q/DQ file imported as the user's own ONNX: its spec says int8 of unknown style, so on a Zen 3 it runs
    unfused (its quantizer may not have used reduce_range), and on a VNNI CPU on the fused kernels."""
    from vggedge.model.foreign import import_onnx

    path, spec = import_onnx(qdq_files["tensorrt"], "raw", out=tmp_path / "users.onnx")
    assert (spec.precision, spec.extra["calibration"]["style"]) == ("int8", "unknown")
    assert saturation.qdq_style(path) == "unknown"
    monkeypatch.setattr(cpuf, "cpu_features", lambda: features(ZEN3))
    runner = cpu_runner(path)
    assert runner.options.graph_optimization == "disable" and "users.onnx: ran unfused" in runner.note
    monkeypatch.setattr(cpuf, "cpu_features", lambda: features(ZEN4))
    assert cpu_runner(path).options.graph_optimization == "all"
    fp32, _ = import_onnx(qdq_files["fp32"], "raw", out=tmp_path / "users_fp32.onnx")
    assert saturation.qdq_style(fp32) is None
