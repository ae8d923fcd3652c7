"""Issue 22 on an AVX2-only CPU, on whatever x86 CPU runs the tests: the process runs under qemu's CPU
emulation (``qemu-x86_64 -cpu EPYC-Milan``: the CPUID of an AMD Zen 3, AVX2, no AVX-512, no VNNI), so
onnxruntime dispatches to the U8S8 kernels a Zen 3 runs and vggedge detects that CPU.

The model is one Q/DQ convolution built to saturate ``VPMADDUBSW``: every input quantizes to 255 and every
weight is 127, so each pair of products (2 x 255 x 127 = 64770) overflows the 16-bit sum. Its exact
output is known. Under emulation a default onnxruntime session (fused QLinearConv) gets it wrong, and the
runner vggedge plans for the same file, imported as a user's own ONNX, gets it exactly right.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86-64 emulation"),
              pytest.mark.skipif(shutil.which("qemu-x86_64") is None,
                                 reason="qemu-x86_64 not installed (Debian qemu-user; .ci/run installs it)")]

CHANNELS, KERNELS, SIZE, OUT_SCALE = 3, 4, 6, 4096.0
#: every output: 27 products of 255 x 127, quantized with scale 4096 (round(874395 / 4096) * 4096)
EXACT = round(255 * 127 * 9 * CHANNELS / OUT_SCALE) * OUT_SCALE

CHILD = r"""
import json, sys
import numpy as np, onnxruntime as ort
from vggedge.runtime.base import RunnerOptions
from vggedge.runtime.cpu.features import cpu_features
from vggedge.runtime.select import select_runner

path = sys.argv[1]
x = np.full((1, 3, 6, 6), 255, np.float32)
fused = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
features = cpu_features()
selection = select_runner(path, "auto", options=RunnerOptions(max_batch=1))
with selection.runner as runner:
    planned = next(iter(runner.infer({"x": x}).values()))
print(json.dumps({"isa": features.isa, "saturates": features.u8s8_saturates, "why": selection.why,
                  "fused": fused.ravel().tolist(), "planned": np.asarray(planned).ravel().tolist()}))
"""


def saturating_conv(path: Path) -> Path:
    """DQ -> Conv -> Q with uint8 inputs at 255 and int8 weights at 127 (scale 1), pooled to [N, 4] logits."""
    scalar = lambda name, value, dtype: numpy_helper.from_array(np.array(value, dtype), name)  # noqa: E731
    init = [scalar("xs", 1.0, np.float32), scalar("xz", 0, np.uint8), scalar("ws", 1.0, np.float32),
            scalar("wz", 0, np.int8), scalar("ys", OUT_SCALE, np.float32), scalar("yz", 0, np.uint8),
            numpy_helper.from_array(np.full((KERNELS, CHANNELS, 3, 3), 127, np.int8), "wq")]
    node = helper.make_node
    nodes = [node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]), node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
             node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"]), node("Conv", ["xd", "wd"], ["y"], kernel_shape=[3, 3]),
             node("QuantizeLinear", ["y", "ys", "yz"], ["yq"]), node("DequantizeLinear", ["yq", "ys", "yz"], ["yd"]),
             node("GlobalAveragePool", ["yd"], ["pooled"]), node("Flatten", ["pooled"], ["logits"])]
    graph = helper.make_graph(nodes, "saturating_conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, CHANNELS, SIZE, SIZE])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, KERNELS])], init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def emulated(script: str, *args: str, cpu: str = "EPYC-Milan", cwd: Path) -> dict:
    """Runs ``script`` in this Python under ``qemu-x86_64 -cpu CPU``; its last stdout line is JSON."""
    env = {**os.environ, "VGGEDGE_TUNE": "0", "VGGEDGE_CACHE": str(cwd / "cache")}  # timing qemu measures nothing
    done = subprocess.run(["qemu-x86_64", "-cpu", cpu, sys.executable, "-c", script, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    errors = "\n".join(line for line in done.stderr.splitlines() if "TCG doesn't support" not in line)
    assert done.returncode == 0, errors
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> Path:
    """The saturating file imported as a user's own ONNX (raw pixels in): no calibration style in its spec."""
    from vggedge.model.foreign import import_onnx

    work = tmp_path_factory.mktemp("avx2")
    path, spec = import_onnx(saturating_conv(work / "user.onnx"), "raw")
    assert spec.precision == "int8" and spec.extra["calibration"]["style"] == "unknown"
    return path


def test_on_an_emulated_zen3_vggedge_runs_the_qdq_file_exactly_where_fused_kernels_saturate(imported: Path):
    seen = emulated(CHILD, str(imported), cwd=imported.parent)
    print(f"emulated EPYC-Milan: isa={seen['isa']!r}; fused {seen['fused']}, planned {seen['planned']}, exact {EXACT}")
    assert seen["saturates"] and "VNNI" in seen["isa"] and "AVX2" in seen["isa"], seen["isa"]
    assert all(abs(v - EXACT) >= OUT_SCALE for v in seen["fused"]), "the emulated CPU's fused kernels did not saturate"
    assert seen["planned"] == [EXACT] * KERNELS
    assert "unfused" in seen["why"], seen["why"]


def test_on_this_cpu_the_planned_runner_is_exact_too(imported: Path):
    from vggedge.runtime.base import RunnerOptions
    from vggedge.runtime.select import select_runner

    with select_runner(imported, "auto", options=RunnerOptions(max_batch=1)).runner as runner:
        out = next(iter(runner.infer({"x": np.full((1, CHANNELS, SIZE, SIZE), 255, np.float32)}).values()))
    assert np.asarray(out).ravel().tolist() == [EXACT] * KERNELS
