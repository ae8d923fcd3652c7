"""The peers benchmark compares like with like: its PyTorch model computes our ONNX model's function."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from vggedge.model.export import export_vgg16
from vggedge.model.vgg16 import VGG16Options

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("peers", ROOT / "benchmarks" / "peers.py")
peers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(peers)


def test_torch_peer_matches_onnx(tmp_path):
    pytest.importorskip("torch")
    opts = VGG16Options(include_rescaling=False, include_top=True, num_classes=10, input_shape=(32, 32, 3))
    model = export_vgg16("random:6", tmp_path / "m.onnx", opts).onnx_path
    x = np.random.default_rng(0).uniform(-100, 100, (2, 3, 32, 32)).astype(np.float32)
    want = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]
    got = peers.torch_vgg(model, "fp32")(x).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_table_ratios_and_shares():
    row = lambda b1_ms, b8_ips, precision: {"precision": precision, "b1": {"median_ms": b1_ms},
                                            "b8": {"img_per_s": b8_ips}}
    results = {"base": row(200.0, 5.0, "fp32"), "fast": row(50.0, 20.0, "int8"),
               "gpu": row(5.0, 500.0, "fp16-gpu"), "broken": {"error": "RuntimeError: nope"}}
    text = peers.table(results, {"fp32": 100.0, "int8": 400.0}, "base")
    assert "| fast | int8 | 50.0 | 4.00 | 20.0 | 4.00 | 77% |" in text  # 20 img/s * 15.47 GMAC / 400
    assert "| gpu | fp16-gpu | 5.0 | 40.00 | 500.0 | 100.00 | - |" in text
    assert "not run: RuntimeError: nope" in text


def test_acceptance_line_reports_the_ratio_honestly():
    assert "0.97x at batch 1, 1.02x at batch 8; meets the 0.95x target" in peers.acceptance_line({"b1": 0.97, "b8": 1.02})
    assert "0.50x at batch 1, 0.96x at batch 8; does NOT meet" in peers.acceptance_line({"b1": 0.5, "b8": 0.96})
    assert "not measured (RuntimeError: x)" in peers.acceptance_line({"error": "RuntimeError: x"})


def test_plugin_rows_say_why_the_plugin_cannot_run(monkeypatch):
    import dataclasses

    from vggedge.runtime.cpu import features as cpuf

    monkeypatch.setattr(peers.openvino_ep, "installed", lambda: False)  # as on a machine without the plugin

    features = cpuf.parse_cpuinfo("flags\t\t: avx2 avx512_bf16\n", "x86_64", 2, ("CPUExecutionProvider",))
    rows = peers.plugin_rows(features)
    assert set(rows) == {"vggedge INT8 Q/DQ on the OpenVINO plugin EP",
                         "vggedge FP32 file in bfloat16 on the OpenVINO plugin EP"}
    with pytest.raises(RuntimeError, match="onnxruntime-ep-openvino"):
        rows["vggedge INT8 Q/DQ on the OpenVINO plugin EP"][0]()
    assert peers.plugin_rows(dataclasses.replace(features, openvino_plugin=True)) == {}  # real rows instead


def test_head_to_head_ratio():
    import time

    x = {1: np.zeros(1), 8: np.zeros(8)}
    ratio = peers.head_to_head(lambda a: time.sleep(0.004), lambda a: time.sleep(0.001), x, 1, 0.02)
    assert set(ratio) == {1, 8} and all(r > 1.5 for r in ratio.values())  # generous: sleep granularity
