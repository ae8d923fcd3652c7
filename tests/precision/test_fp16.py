"""FP16 conversion of our VGG16 and of foreign ONNX classifiers (NHWC, fixed batch), plus their INT8 path."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterator

import numpy as np
import onnx
import pytest
from small_models import link_model
from onnx import TensorProto, helper, numpy_helper

from vggedge.apps.classify import Classifier
from vggedge.errors import ModelError
from vggedge.model.foreign import import_onnx
from vggedge.precision.fp16 import write_fp16
from vggedge.precision.int8 import quantize_int8
from vggedge.precision.qdq_check import tensorrt_violations
from vggedge.preprocess import list_images, preprocess
from vggedge.runtime.ort import OrtRunner
from vggedge.spec import load_spec_for

REPO = Path(__file__).resolve().parents[2]
CALIB = REPO / "calib"
PHOTO = CALIB / "cat_chelsea.jpg"
RNG = np.random.default_rng(0)


def _run(path: Path, images: list[Path]) -> np.ndarray:
    """Outputs of a model (through its own spec's preprocessing) as float32."""
    spec = load_spec_for(path)
    with OrtRunner(path) as runner:
        out = runner.infer({spec.input_name: preprocess(images, spec)})[spec.output_name]
    return np.asarray(out, dtype=np.float32)


def _assert_close(got: np.ndarray, want: np.ndarray) -> None:
    np.testing.assert_allclose(got, want, rtol=1e-2, atol=1e-2 * float(np.abs(want).max()))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("fp16")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)  # ~140 MB model: do not keep it in pytest's temp folders


@pytest.fixture(scope="module")
def model(workdir: Path, vgg32) -> Path:
    return link_model(vgg32("random:1", 10), workdir)


@pytest.mark.parametrize("fp16_io", [False, True])
def test_write_fp16_our_model(model: Path, fp16_io: bool) -> None:
    dst = model.with_name(f"m.fp16{'-io' if fp16_io else ''}.onnx")
    path = write_fp16(model, dst, fp16_io=fp16_io)
    converted = onnx.load(path)
    kinds = {t.data_type for t in converted.graph.initializer if t.name.endswith((".kernel", ".bias"))}
    assert kinds == {TensorProto.FLOAT16}
    assert not [t.name for t in converted.graph.initializer if t.data_type == TensorProto.FLOAT]
    io_type = TensorProto.FLOAT16 if fp16_io else TensorProto.FLOAT
    assert [v.type.tensor_type.elem_type for v in (*converted.graph.input, *converted.graph.output)] == [io_type] * 2
    spec = load_spec_for(path)
    assert spec.precision == "fp16"
    assert spec.dtype == spec.output_dtype == ("float16" if fp16_io else "float32")
    _assert_close(_run(path, [PHOTO]), _run(model, [PHOTO]))
    path.unlink()


# ---- foreign graphs built with onnx.helper ----

def _const(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(array.astype(np.float32), name)


def _conv_inits(channels: int = 4) -> list[onnx.TensorProto]:
    return [_const("conv_w", RNG.normal(0, 0.3, (channels, 3, 3, 3))), _const("conv_b", RNG.normal(0, 0.1, channels))]


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)
    return path


def nhwc_softmax_graph(path: Path, classes: int = 5) -> Path:
    """(a) NHWC input, Transpose to NCHW, Conv-BN-Relu, GlobalAveragePool, Flatten, MatMul+Add, Softmax."""
    nodes = [
        helper.make_node("Transpose", ["input_1"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "conv_w", "conv_b"], ["conv"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["conv", "bn_s", "bn_b", "bn_m", "bn_v"], ["bn"]),
        helper.make_node("Relu", ["bn"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"]),
        helper.make_node("MatMul", ["flat", "fc_w"], ["mm"]),
        helper.make_node("Add", ["mm", "fc_b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
    ]
    inits = _conv_inits() + [
        _const("bn_s", RNG.uniform(0.5, 1.5, 4)), _const("bn_b", RNG.normal(0, 0.1, 4)),
        _const("bn_m", RNG.normal(0, 10, 4)), _const("bn_v", RNG.uniform(100, 400, 4)),
        _const("fc_w", RNG.normal(0, 1, (4, classes))), _const("fc_b", RNG.normal(0, 0.1, classes)),
    ]
    graph = helper.make_graph(nodes, "nhwc_net", [helper.make_tensor_value_info("input_1", TensorProto.FLOAT,
                                                                                ["N", 32, 32, 3])],
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", classes])], inits)
    return _save(graph, path)


def fixed_batch_gemm_graph(path: Path, classes: int = 7) -> Path:
    """(b) NCHW input with batch fixed at 1, Conv-Relu-MaxPool, GlobalAveragePool, Flatten, Gemm logits."""
    nodes = [
        helper.make_node("Conv", ["data", "conv_w", "conv_b"], ["conv"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("MaxPool", ["relu"], ["pool"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["pool"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["scores"], transB=1),
    ]
    inits = _conv_inits() + [_const("fc_w", RNG.normal(0, 0.05, (classes, 4))), _const("fc_b", RNG.normal(0, 0.1, classes))]
    graph = helper.make_graph(nodes, "fixed_net", [helper.make_tensor_value_info("data", TensorProto.FLOAT,
                                                                                 [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, classes])], inits)
    return _save(graph, path)


@pytest.fixture(scope="module")
def nhwc(workdir: Path) -> Path:
    return import_onnx(nhwc_softmax_graph(workdir / "nhwc.onnx"), "caffe-rgb")[0]


@pytest.fixture(scope="module")
def fixed(workdir: Path) -> Path:
    return import_onnx(fixed_batch_gemm_graph(workdir / "fixed.onnx"), "caffe-rgb")[0]


def test_import_nhwc_softmax(nhwc: Path) -> None:
    spec = load_spec_for(nhwc)
    assert (spec.layout, spec.height, spec.width, spec.channels) == ("NHWC", 32, 32, 3)
    assert (spec.input_name, spec.output_name, spec.num_classes) == ("input_1", "probs", 5)
    assert spec.output_kind == "probabilities" and spec.labels is None
    assert spec.precision == "fp32" and spec.fixed_batch is None
    assert spec.preprocessing.channel_order == "RGB"


def test_import_fixed_batch_gemm(fixed: Path) -> None:
    spec = load_spec_for(fixed)
    assert (spec.layout, spec.height, spec.width) == ("NCHW", 16, 16)
    assert spec.fixed_batch == 1
    assert (spec.num_classes, spec.output_kind) == (7, "logits")


@pytest.mark.parametrize("which", ["nhwc", "fixed"])
def test_foreign_fp16_matches_fp32(which: str, request: pytest.FixtureRequest) -> None:
    model: Path = request.getfixturevalue(which)
    path = write_fp16(model)
    assert load_spec_for(path).layout == load_spec_for(model).layout
    photos = list_images(CALIB)[:3] if which == "nhwc" else [PHOTO]  # the fixed model takes exactly 1
    _assert_close(_run(path, photos), _run(model, photos))


@pytest.mark.parametrize("which", ["nhwc", "fixed"])
def test_foreign_int8_and_classifier(which: str, request: pytest.FixtureRequest) -> None:
    model: Path = request.getfixturevalue(which)
    result = quantize_int8(model, CALIB, limit=3, batch_size=2)  # a fixed-batch model must override the 2
    assert result.images == 3
    assert tensorrt_violations(onnx.load(result.path)) == []
    spec = load_spec_for(result.path)
    assert spec.precision == "int8" and spec.layout == load_spec_for(model).layout
    for path in (model, result.path):
        with Classifier(path, backend="ort-cpu", batch_size=2) as clf:
            results = clf.classify(list_images(CALIB)[:3], k=2)
        assert len(results) == 3 and all(len(preds) == 2 for preds in results)
        assert {p.label for preds in results for p in preds} <= {f"class_{i}" for i in range(spec.num_classes)}
        assert clf.timings.images == ([1, 1, 1] if which == "fixed" else [2, 1])


# ---- graphs import_onnx refuses ----

def _identity_model(path: Path, shape: list) -> Path:
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "bad",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)])
    return _save(graph, path)


@pytest.mark.parametrize("shape, message", [
    ([1, 3, 4, 32, 32], "expected 4-D NCHW or NHWC"),
    ([1, 2, 32, 32], "cannot tell NCHW from NHWC"),
    (["N", 3, "H", "W"], "dynamic height/width"),
])
def test_import_refuses(tmp_path: Path, shape: list, message: str) -> None:
    path = _identity_model(tmp_path / "bad.onnx", shape)
    with pytest.raises(ModelError, match=message) as info:
        import_onnx(path, "caffe-rgb")
    assert str(path) in str(info.value) and "'x'" in str(info.value)
