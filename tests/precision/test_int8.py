"""INT8 Q/DQ quantization on a small (32x32, 10-class) VGG16: TensorRT's rules, calibration, cache, accuracy."""
from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path
from typing import Iterator

import numpy as np
import onnx
import pytest
from small_models import link_model
from onnx import TensorProto, numpy_helper

import vggedge.precision.int8 as int8_module
from vggedge.errors import CalibrationError, ConfigError
from vggedge.precision.int8 import Int8Result, calibration_set, image_reader, quantize_int8
from vggedge.precision.qdq_check import tensorrt_violations
from vggedge.preprocess import list_images, preprocess
from vggedge.runtime.ort import OrtRunner
from vggedge.spec import load_spec_for

REPO = Path(__file__).resolve().parents[2]
CALIB = REPO / "calib"
QDQ = ("QuantizeLinear", "DequantizeLinear")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("int8")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)  # ~140 MB per model: do not keep it in pytest's temp folders


@pytest.fixture(scope="module")
def model(workdir: Path, vgg32) -> Path:
    return link_model(vgg32("random:1", 10), workdir)


@pytest.fixture(scope="module")
def int8(model: Path) -> Int8Result:
    result = quantize_int8(model, CALIB, limit=4)
    assert not result.cache_hit  # a fresh folder: the ranges were computed
    return result


@pytest.fixture(scope="module")
def qdq(int8: Int8Result) -> onnx.ModelProto:
    return onnx.load(int8.path)


# ---- independent checks of TensorRT's Q/DQ rules (deliberately not using qdq_check) ----

def _inits(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    return {t.name: t for t in model.graph.initializer}


def _producer(model: onnx.ModelProto, name: str) -> onnx.NodeProto | None:
    return next((n for n in model.graph.node if name in n.output), None)


def _axis(node: onnx.NodeProto) -> int:
    return next((a.i for a in node.attribute if a.name == "axis"), 1)


def _weight_dq(model: onnx.ModelProto, layer: onnx.NodeProto) -> tuple[onnx.NodeProto, onnx.TensorProto]:
    """The DequantizeLinear feeding a layer's weight, and the weight initializer behind it."""
    dq = _producer(model, layer.input[1])
    assert dq is not None and dq.op_type == "DequantizeLinear", f"{layer.name}: weight is not dequantized"
    inits = _inits(model)
    source = dq.input[0]
    if source not in inits:  # AddQDQPairToWeight: float weight -> Q -> DQ
        q = _producer(model, source)
        assert q is not None and q.op_type == "QuantizeLinear"
        source = q.input[0]
    return dq, inits[source]


def test_int8_passes_qdq_check(qdq: onnx.ModelProto) -> None:
    assert tensorrt_violations(qdq) == []


def test_int8_zero_points_are_int8_zero(qdq: onnx.ModelProto) -> None:
    inits = _inits(qdq)
    nodes = [n for n in qdq.graph.node if n.op_type in QDQ]
    assert len(nodes) > 40  # every conv/gemm input, output and weight
    for node in nodes:
        assert len(node.input) == 3 and node.input[2] in inits, f"{node.name}: no constant zero point"
        zp = numpy_helper.to_array(inits[node.input[2]])
        assert zp.dtype == np.int8, f"{node.name}: zero point {zp.dtype}"
        assert not np.any(zp), f"{node.name}: zero point {zp}"


def test_int8_weights_per_channel_on_output_axis(qdq: onnx.ModelProto) -> None:
    inits = _inits(qdq)
    layers = [n for n in qdq.graph.node if n.op_type in ("Conv", "Gemm")]
    assert sum(n.op_type == "Conv" for n in layers) == 13 and sum(n.op_type == "Gemm" for n in layers) == 3
    for layer in layers:
        dq, weight = _weight_dq(qdq, layer)
        if layer.op_type == "Gemm":
            assert next(a.i for a in layer.attribute if a.name == "transB") == 1
        scale = numpy_helper.to_array(inits[dq.input[1]])
        assert _axis(dq) == 0, f"{layer.name}: axis {_axis(dq)}"
        assert scale.shape == (weight.dims[0],), f"{layer.name}: scales {scale.shape} vs weight {list(weight.dims)}"


def test_int8_biases_stay_float(qdq: onnx.ModelProto) -> None:
    inits = _inits(qdq)
    assert not [t.name for t in qdq.graph.initializer if t.data_type == TensorProto.INT32]
    for layer in (n for n in qdq.graph.node if n.op_type in ("Conv", "Gemm")):
        assert layer.input[2] in inits, f"{layer.name}: bias is not a plain initializer"
        assert inits[layer.input[2]].data_type == TensorProto.FLOAT


def test_int8_quantize_outputs_have_one_consumer(qdq: onnx.ModelProto) -> None:
    for q in (n for n in qdq.graph.node if n.op_type == "QuantizeLinear"):
        consumers = [n for n in qdq.graph.node if q.output[0] in n.input]
        assert len(consumers) == 1, f"{q.name} feeds {[c.name for c in consumers]}"


def test_int8_opset(qdq: onnx.ModelProto) -> None:
    assert next(o.version for o in qdq.opset_import if o.domain in ("", "ai.onnx")) >= 13


def test_onnxruntime_defaults_break_tensorrt_rules(model: Path, workdir: Path) -> None:
    """The same model quantized with onnxruntime's defaults: the check reports what TensorRT would reject."""
    from onnxruntime.quantization import QuantFormat, quantize_static

    spec = load_spec_for(model)
    paths = list_images(CALIB)[:4]
    out = workdir / "m.ort-defaults.onnx"
    quantize_static(str(model), str(out), image_reader(paths, spec), quant_format=QuantFormat.QDQ, per_channel=True)
    problems = tensorrt_violations(onnx.load(out))
    assert any("is not 0" in p and "symmetric" in p for p in problems), problems[:5]
    assert any("int32 tensor" in p and "quantized bias" in p and "QuantizeBias=False" in p for p in problems)
    out.unlink()


def test_qdq_check_catches_wrong_weight_axis(qdq: onnx.ModelProto) -> None:
    """Per-channel scales on the input-channel axis of a Q/DQ weight pair are reported."""
    broken = onnx.ModelProto()
    broken.CopyFrom(qdq)
    layer = next(n for n in broken.graph.node if n.name == "block2_conv1")
    dq, weight = _weight_dq(broken, layer)
    q = _producer(broken, dq.input[0])  # None for int8 weights (the default): DequantizeLinear alone
    for node in (n for n in (q, dq) if n is not None):
        next(a for a in node.attribute if a.name == "axis").i = 1
    inits = _inits(broken)
    inits[dq.input[1]].CopyFrom(numpy_helper.from_array(np.ones(weight.dims[1], np.float32), dq.input[1]))
    inits[dq.input[2]].CopyFrom(numpy_helper.from_array(np.zeros(weight.dims[1], np.int8), dq.input[2]))
    problems = tensorrt_violations(broken)
    assert len(problems) == 1
    assert "block2_conv1" in problems[0] and "axis 1" in problems[0] and "output-channel axis 0" in problems[0]


# ---- calibration, cache, spec, accuracy ----

def test_empty_calib_folder(model: Path, tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match=re.escape(str(tmp_path))):
        quantize_int8(model, tmp_path)


def test_unknown_method(model: Path) -> None:
    with pytest.raises(ConfigError, match="calibration method 'kl'"):
        quantize_int8(model, CALIB, method="kl")


def test_small_set_warns_and_uses_inference_preprocessing(model: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    photos = tmp_path / "three"
    photos.mkdir()
    for path in list_images(CALIB)[:3]:
        shutil.copy(path, photos / path.name)
    calls: list[tuple[list, object]] = []

    def recording(images, spec):
        calls.append((list(images), spec))
        return preprocess(images, spec)

    monkeypatch.setattr(int8_module, "preprocess", recording)
    with caplog.at_level(logging.WARNING, logger="vggedge.precision.int8"):
        result = quantize_int8(model, photos, tmp_path / "three.int8.onnx", cache_dir=tmp_path / "cache")
    assert any("has 3 images: too few to be representative" in r.getMessage() for r in caplog.records)
    assert result.images == 3 and not result.cache_hit
    assert {p.name for images, _ in calls for p in images} == {p.name for p in photos.iterdir()}
    assert all(spec == load_spec_for(model) for _, spec in calls)
    result.path.unlink()  # ~130 MB: do not keep it in pytest's temp folders


def test_cache_hit_and_method_in_name(model: Path, int8: Int8Result, workdir: Path) -> None:
    assert "minmax" in int8.cache_path.name and int8.cache_path.is_file()
    again = quantize_int8(model, CALIB, workdir / "again.int8.onnx", limit=4)
    assert again.cache_hit and again.cache_path == int8.cache_path
    first, second = _inits(onnx.load(int8.path)), _inits(onnx.load(again.path))
    for name in (n for n in first if n.endswith("_scale")):  # the cached ranges give the same scales
        np.testing.assert_array_equal(numpy_helper.to_array(first[name]), numpy_helper.to_array(second[name]))
    other = quantize_int8(model, CALIB, workdir / "entropy.int8.onnx", method="entropy", limit=4)
    assert not other.cache_hit and "entropy" in other.cache_path.name and other.cache_path != int8.cache_path
    for path in (again.path, other.path):
        path.unlink()


def test_int8_spec(int8: Int8Result, model: Path) -> None:
    spec = load_spec_for(int8.path)
    assert spec.precision == "int8"
    assert spec.input_name == load_spec_for(model).input_name
    calibration = spec.extra["calibration"]
    assert calibration["method"] == "minmax" and calibration["images"] == 4
    assert calibration["calib_sha256"] == int8.calib_sha256
    assert calibration["calib_sha256"] == calibration_set(CALIB, load_spec_for(model), limit=4).sha256


def test_int8_argmax_matches_fp32(int8: Int8Result, model: Path) -> None:
    spec = load_spec_for(model)
    batch = preprocess(list_images(CALIB), spec)
    results = []
    for path in (model, int8.path):
        with OrtRunner(path) as runner:
            results.append(runner.infer({spec.input_name: batch})[spec.output_name])
    fp32, q = results
    assert q.shape == fp32.shape == (len(batch), 10)
    assert np.mean(fp32.argmax(axis=1) == q.argmax(axis=1)) >= 0.75
