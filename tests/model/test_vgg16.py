"""Keras-CV VGG16Backbone options: validation errors and the documented output shapes."""
from __future__ import annotations

import itertools

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from vggedge.errors import ConfigError
from vggedge.model.vgg16 import OPSET, VGG16Options, build_onnx, random_weights


def run(options: VGG16Options, batch: int = 2) -> tuple[onnx.ModelProto, np.ndarray]:
    model = build_onnx(random_weights(options, seed=1), options)
    h, w, c = options.input_shape
    x = np.random.default_rng(0).uniform(0, 255, (batch, c, h, w)).astype(np.float32)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return model, sess.run(None, {"images": x})[0]


TOP = [dict(include_top=True, num_classes=n, classifier_activation=a) for n, a in
       itertools.product((5, 17), ("softmax", None))]
NO_TOP = [dict(include_top=False, pooling=p) for p in (None, "avg", "max")]


@pytest.mark.parametrize("rescaling", [True, False])
@pytest.mark.parametrize("shape", [(32, 32, 3), (75, 130, 3), (64, 64, 1)])
@pytest.mark.parametrize("kw", TOP + NO_TOP, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()))
def test_output_shape_is_the_documented_one(kw, shape, rescaling):
    options = VGG16Options(include_rescaling=rescaling, input_shape=shape, **kw)
    model, out = run(options)
    fh, fw = shape[0] // 32, shape[1] // 32
    if options.include_top:
        expected = (2, kw["num_classes"])
    elif options.pooling:
        expected = (2, 512)
    else:
        expected = (2, fh, fw, 512)  # Keras-CV's NHWC feature map
    assert out.shape == expected
    assert options.output_shape() == (None, *expected[1:])
    assert [o.name for o in model.graph.output] == [options.output_name]
    if options.include_top and options.classifier_activation == "softmax":
        np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


def test_graph_facts():
    options = VGG16Options(include_rescaling=True, include_top=True, num_classes=3, input_shape=(32, 32, 3))
    model = build_onnx(random_weights(options), options)
    assert model.opset_import[0].version == OPSET == 17
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [3, 32, 32]
    names = {n.name for n in model.graph.node}
    for layer in ["rescaling", "block1_conv1", "block3_conv3", "block5_conv3", "block5_pool", "flatten",
                  "fc1", "fc2", "predictions"]:
        assert layer in names
    onnx.checker.check_model(model)  # the full checker agrees with the weightless structural check


def test_rescaling_divides_by_255():
    on = VGG16Options(include_rescaling=True, include_top=False, pooling="avg", input_shape=(32, 32, 3))
    off = VGG16Options(include_rescaling=False, include_top=False, pooling="avg", input_shape=(32, 32, 3))
    x = np.random.default_rng(0).uniform(0, 255, (1, 3, 32, 32)).astype(np.float32)
    run_on = ort.InferenceSession(build_onnx(random_weights(on), on).SerializeToString())
    run_off = ort.InferenceSession(build_onnx(random_weights(off), off).SerializeToString())
    np.testing.assert_allclose(run_on.run(None, {"images": x})[0], run_off.run(None, {"images": x / 255})[0],
                               rtol=1e-4, atol=1e-6)


def test_dynamic_batch():
    options = VGG16Options(include_rescaling=False, include_top=True, num_classes=4, input_shape=(32, 32, 3))
    for batch in (1, 5):
        assert run(options, batch)[1].shape == (batch, 4)


@pytest.mark.parametrize("kw, message", [
    (dict(include_top=True), r"If `include_top` is True, you should specify `num_classes`"),
    (dict(include_top=True, num_classes=10, pooling="avg"), r"`pooling` must be `None` when `include_top=True`"),
    (dict(include_top=False, pooling="sum"), r"pooling must be one of None, 'avg', 'max'; received 'sum'"),
    (dict(include_top=True, num_classes=10, classifier_activation="relu"), r"'softmax' or None; received 'relu'"),
    (dict(include_top=False, input_shape=(31, 224, 3)), r"at least 32"),
    (dict(include_top=False, input_shape=(224, 224)), r"\(height, width, channels\)"),
    (dict(include_top=True, num_classes=0), r"num_classes|include_top"),
])
def test_validation_errors(kw, message):
    with pytest.raises(ConfigError, match=message):
        VGG16Options(include_rescaling=False, **kw)
