"""OpenVINO itself as a CPU runner (issue 22): the same files, the runner contract, hints, threads, run()."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from vggedge.precision.int8 import TENSORRT, quantize_int8
from vggedge.runtime.base import RunnerOptions
from vggedge.runtime.cpu import features as cpuf, variants as cpuv
from vggedge.runtime.cpu.openvino_native import OpenVinoRunner, hint_for, installed
from vggedge.runtime.ort import OrtRunner

REPO = Path(__file__).resolve().parents[2]
needs_openvino = pytest.mark.skipif(not installed(), reason="openvino not installed (pip install 'vggedge[openvino]')")
ZEN3 = cpuf.parse_cpuinfo("flags\t\t: fpu sse2 avx avx2 fma\n", "x86_64", 2, ("CPUExecutionProvider",))
ZEN4 = cpuf.parse_cpuinfo("flags\t\t: avx2 avx512f avx512_bf16 avx512_vnni\n", "x86_64", 2, ("CPUExecutionProvider",))
SAPPHIRE = cpuf.parse_cpuinfo("flags\t\t: avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_int8 amx_tile\n",
                              "x86_64", 2, ("CPUExecutionProvider",))
GRAVITON = cpuf.parse_cpuinfo("Features\t: fp asimd asimddp\n", "aarch64", 2, ("CPUExecutionProvider",))


def native(features: cpuf.CpuFeatures) -> list[str]:
    return [v.key for v in cpuv.variants_for(dataclasses.replace(features, openvino_native=True))
            if v.engine == "openvino"]


def test_native_variants_on_every_vendor() -> None:
    assert native(ZEN4) == ["ov-native-int8", "ov-native-bf16", "ov-native-fp32"]
    assert native(GRAVITON) == ["ov-native-int8", "ov-native-fp32"]
    assert native(ZEN3) == ["ov-native-fp32"]  # no INT8 where U8S8 products can saturate
    amx = [v.key for v in cpuv.variants_for(dataclasses.replace(SAPPHIRE, openvino_native=True))]
    assert amx[0] == "ov-native-int8"  # 3-4x onnxruntime's INT8 on AMX (issue 22)


def test_native_int8_comes_first_on_x86_where_it_is_offered() -> None:
    """Untuned (VGGEDGE_TUNE=0) order: on a Zen 4 OpenVINO's INT8 ran 1.18x/1.11x onnxruntime's at batch 1/8
    (benchmarks/results/cpu-engines-zen4-2026-12-06.md), so the order says what tuning finds there."""
    def order(features: cpuf.CpuFeatures) -> list[str]:
        return [v.key for v in cpuv.variants_for(dataclasses.replace(features, openvino_native=True))]

    assert order(ZEN4)[:3] == ["ov-native-int8", "int8", "int8-trt"]
    assert order(ZEN3)[0] == "int8" and "ov-native-int8" not in order(ZEN3)  # reduce-range file, no saturation
    assert order(GRAVITON)[:2] == ["int8", "int8-trt"]  # Arm: onnxruntime's dot-product kernels first
    assert not [v for v in cpuv.variants_for(ZEN4) if v.engine == "openvino"]  # not installed: none


def test_hint_follows_the_batch() -> None:
    assert hint_for(1) == "LATENCY" and hint_for(8) == "THROUGHPUT"
    runner = OpenVinoRunner("m.onnx", RunnerOptions(max_batch=8, threads=3), inference_precision="bf16")
    assert runner.config() == {"PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_PRECISION_HINT": "bf16",
                               "INFERENCE_NUM_THREADS": "3"}
    assert OpenVinoRunner("m.onnx", RunnerOptions(max_batch=1)).config()["PERFORMANCE_HINT"] == "LATENCY"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from small_models import write_tiny_net

    folder = tmp_path_factory.mktemp("ov_native")
    fp32 = write_tiny_net(folder / "tiny.onnx")
    int8 = quantize_int8(fp32, REPO / "calib", folder / "tiny.int8.onnx", style=TENSORRT,
                         cache_dir=folder / "cache").path
    return {"fp32": fp32, "int8": int8}


@needs_openvino
@pytest.mark.parametrize("which", ["fp32", "int8"])
def test_same_answers_as_onnxruntime_through_infer_and_run(files: dict[str, Path], which: str) -> None:
    x = np.random.default_rng(0).normal(0, 1, (8, 3, 32, 32)).astype(np.float32)
    with OrtRunner(files[which]) as ort_runner:
        want = ort_runner.infer({"images": x})["predictions"]
    with OpenVinoRunner(files[which], RunnerOptions(max_batch=4, threads=1, slots=2)) as runner:
        meta = runner.input_metadata()["images"]
        assert meta.shape == (None, 3, 32, 32) and meta.dtype == np.float32
        got = runner.infer({"images": x[:4]})["predictions"]
        atol = 1e-4 if which == "fp32" else 0.05  # INT8: OpenVINO's own int8 kernels, rounding differs
        np.testing.assert_allclose(got, want[:4], atol=atol)
        outs = list(runner.run([x[0:4], x[4:7], x[7:8]]))  # asynchronous requests, results in input order
        assert [o.batch for o in outs] == [4, 3, 1]
        joined = np.concatenate([o.outputs["predictions"] for o in outs])
        np.testing.assert_allclose(joined, want, atol=atol)
        assert (joined.argmax(1) == want.argmax(1)).mean() >= 0.75
        assert runner.report()["openvino_config"]["INFERENCE_NUM_THREADS"] == "1"


@needs_openvino
def test_run_with_prepare_and_a_bad_batch(files: dict[str, Path]) -> None:
    from vggedge.errors import InputError

    x = np.random.default_rng(1).normal(0, 1, (5, 3, 32, 32)).astype(np.float32)

    def prepare(rows, buffers):
        buffers["images"][:len(rows)] = rows
        return len(rows)

    with OpenVinoRunner(files["fp32"], RunnerOptions(max_batch=4)) as runner:
        outs = list(runner.run([x[:4], x[4:]], prepare))
        assert [o.batch for o in outs] == [4, 1] and outs[1].outputs["predictions"].shape == (1, 10)
        with pytest.raises(InputError):
            list(runner.run([np.zeros((2, 3, 16, 16), np.float32)]))


@needs_openvino
def test_variant_runner_and_tuner_use_it(files: dict[str, Path], monkeypatch) -> None:
    from vggedge.runtime.cpu import tune

    features = dataclasses.replace(ZEN4, openvino_native=True)
    variant = next(v for v in cpuv.variants_for(features) if v.key == "ov-native-int8")
    runner = cpuv.runner_for(variant, files["fp32"], RunnerOptions(max_batch=2))
    assert isinstance(runner, OpenVinoRunner) and runner.model == files["int8"]
    assert tune.time_variant(variant, files["fp32"], RunnerOptions(max_batch=2), 0.05) > 0


def test_micro_batch_of_one_compiles_for_latency() -> None:
    runner = OpenVinoRunner("m.onnx", RunnerOptions(max_batch=8, micro_batch=1))
    assert runner.config()["PERFORMANCE_HINT"] == "LATENCY" and "LATENCY" in runner.describe()


SIGNAL_AFTER_FIFO_RELEASE = r"""
import os, signal, sys
from vggedge.runtime.base import RunnerOptions
from vggedge.runtime.cpu import signal_stack
from vggedge.runtime.cpu.openvino_native import OpenVinoRunner
before = signal_stack.current()
a = OpenVinoRunner(sys.argv[1], RunnerOptions(max_batch=2)).activate()
b = OpenVinoRunner(sys.argv[1], RunnerOptions(max_batch=2)).activate()
a.deactivate(); b.deactivate()  # first in, first out: not the order OpenVINO restores signal stacks in
print("stack kept", signal_stack.current() == before, flush=True)
seen = []
signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
os.kill(os.getpid(), signal.SIGTERM)
print("handled", seen, flush=True)
"""


@needs_openvino
def test_a_signal_after_runners_are_released_out_of_order_is_handled(files: dict[str, Path]) -> None:
    """OpenVINO's CPU plugin swaps the thread's signal stack per compiled model; two runners released first-in
    first-out left it on an unmapped stack, and the next signal (SIGTERM, Ctrl-C) was a SIGSEGV (OpenVINO
    2026.4). The runner keeps the thread's own stack, so the signal reaches its handler."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", SIGNAL_AFTER_FIFO_RELEASE, str(files["fp32"])],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert proc.stdout.split("\n")[:2] == ["stack kept True", "handled [15]"]
