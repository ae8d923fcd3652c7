"""Empirical bias correction on the tiny 4-layer net: the per-channel mean error against FP32 goes away
on the calibration data, only the float biases change, and the model stays TensorRT-valid."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from vggedge.errors import ModelError
from vggedge.precision.bias_correction import (correct_biases, feeds_from, mean_errors, quantized_layers)
from vggedge.precision.int8 import image_reader, quantize_int8
from vggedge.precision.qdq_check import tensorrt_violations
from vggedge.preprocess import list_images
from vggedge.spec import load_spec_for

REPO = Path(__file__).resolve().parents[2]
CALIB = REPO / "calib"
LAYERS = ["conv1", "conv2", "conv3", "fc"]


@pytest.fixture(scope="module")
def plain(tiny_net: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny net quantized without bias correction (4 calibration photos)."""
    folder = tmp_path_factory.mktemp("bias_plain")
    return quantize_int8(tiny_net, CALIB, folder / "tiny.int8.onnx", limit=4).path


@pytest.fixture(scope="module")
def feeds(tiny_net: Path) -> list[dict[str, np.ndarray]]:
    return feeds_from(image_reader(list_images(CALIB)[:4], load_spec_for(tiny_net), 2))


def _biases(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    inits = {t.name: t for t in model.graph.initializer}
    return {n.name: numpy_helper.to_array(inits[n.input[2]]) for n in model.graph.node if n.op_type in ("Conv", "Gemm")}


def test_quantized_layers_in_graph_order(plain: Path) -> None:
    assert [n.name for n in quantized_layers(onnx.load(plain))] == LAYERS


def test_correction_removes_the_mean_channel_error(plain: Path, tiny_net: Path, feeds: list) -> None:
    qdq = onnx.load(plain)
    before = mean_errors(qdq, tiny_net, feeds)
    done = correct_biases(qdq, tiny_net, feeds)
    after = mean_errors(qdq, tiny_net, feeds)
    assert [c.layer for c in done] == LAYERS
    for layer in LAYERS:
        was, now = np.abs(before[layer]).mean(), np.abs(after[layer]).mean()
        assert was > 1e-4, f"{layer}: quantization left no mean error to correct ({was})"
        assert now < 0.02 * was, f"{layer}: mean |error| {was:.3g} -> {now:.3g}"
    # the first layer's correction is exactly its measured error (nothing upstream changed)
    np.testing.assert_allclose(_biases(qdq)["conv1"] - _biases(onnx.load(plain))["conv1"], -before["conv1"],
                               rtol=1e-4, atol=1e-6)


def test_correction_changes_only_biases_and_stays_tensorrt_valid(plain: Path, tiny_net: Path, feeds: list) -> None:
    original, qdq = onnx.load(plain), onnx.load(plain)
    correct_biases(qdq, tiny_net, feeds)
    assert tensorrt_violations(qdq) == []
    assert [(n.op_type, n.name) for n in qdq.graph.node] == [(n.op_type, n.name) for n in original.graph.node]
    old, new = {t.name: t for t in original.graph.initializer}, {t.name: t for t in qdq.graph.initializer}
    biases = {n.input[2] for n in qdq.graph.node if n.op_type in ("Conv", "Gemm")}
    for name in set(old) - biases:  # scales, zero points, int8 weights: untouched
        assert new[name] == old[name], name
    assert len(biases) == 4  # the tiny net's one shared conv bias is split, one per corrected layer
    for name in biases:
        assert new[name].data_type == onnx.TensorProto.FLOAT
    for layer, value in _biases(qdq).items():
        assert not np.array_equal(value, _biases(original)[layer]), layer


def test_fp32_model_must_match(plain: Path, feeds: list, tmp_path: Path) -> None:
    other = onnx.load(plain)
    for node in other.graph.node:
        if node.name == "conv2":
            node.output[0] = "renamed"
    for node in other.graph.node:
        if "c2" in node.input:
            node.input[list(node.input).index("c2")] = "renamed"
    with pytest.raises(ModelError, match="c2"):
        correct_biases(onnx.load(plain), other, feeds)


def test_quantize_int8_option(tiny_net: Path, plain: Path, tmp_path: Path) -> None:
    result = quantize_int8(tiny_net, CALIB, tmp_path / "bc.int8.onnx", limit=4, bias_correction=True,
                           cache_dir=plain.parent / "calibration-cache")
    assert result.cache_hit  # the same ranges: bias correction does not change calibration
    calibration = load_spec_for(result.path).extra["calibration"]
    assert calibration["bias_correction"] is True and calibration["bias_corrected_layers"] == 4
    corrected = onnx.load(result.path)
    assert tensorrt_violations(corrected) == []
    assert any(not np.array_equal(a, _biases(onnx.load(plain))[k]) for k, a in _biases(corrected).items())
    again = quantize_int8(tiny_net, CALIB, tmp_path / "bc.int8.onnx", limit=4, bias_correction=True,
                          cache_dir=plain.parent / "calibration-cache")
    assert again.reused
    rebuilt = quantize_int8(tiny_net, CALIB, tmp_path / "bc.int8.onnx", limit=4,
                            cache_dir=plain.parent / "calibration-cache")
    assert not rebuilt.reused  # the option is part of the reuse key
    assert load_spec_for(rebuilt.path).extra["calibration"]["bias_correction"] is None


def test_accuracy_report_names_the_levers(tiny_net: Path, plain: Path, tmp_path: Path) -> None:
    import types

    from vggedge.apps.accuracy import accuracy_report
    from vggedge.precision.agreement import measure

    result = quantize_int8(tiny_net, CALIB, tmp_path / "lv.int8.onnx", limit=4, bias_correction=True, calib_views=2,
                           cache_dir=tmp_path / "cache")
    scores = np.eye(3, dtype=np.float32)
    report = accuracy_report(result.path, tiny_net, types.SimpleNamespace(describe=dict),
                             measure(scores, scores, ["a", "b", "c"]))
    assert report["calibration"]["bias_correction"] is True and report["calibration"]["views_per_photo"] == 2
    plain_report = accuracy_report(plain, tiny_net, types.SimpleNamespace(describe=dict),
                                   measure(scores, scores, ["a", "b", "c"]))
    assert plain_report["calibration"]["bias_correction"] is False
    assert plain_report["calibration"]["views_per_photo"] is None
