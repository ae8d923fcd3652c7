"""Keras 3 files as Keras really writes them: a VGG16 built by Keras-CV's own ``VGG16Backbone`` (where
keras-cv installs) and by ``keras.applications.VGG16`` (a Keras functional model with the same layer
names), given random weights, saved as ``.weights.h5`` and as ``.keras``, exported through vggedge and
compared with Keras's own output (torch backend) within 1e-4 relative."""
from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

os.environ.setdefault("KERAS_BACKEND", "torch")
pytest.importorskip("torch", reason="Keras's torch backend needs PyTorch (pip install torch)")
keras = pytest.importorskip("keras", reason="the Keras parity tests need Keras 3 (pip install keras)")

from nhwc_reference import relative_error  # noqa: E402
from vggedge.cli import main  # noqa: E402
from vggedge.errors import WeightsError  # noqa: E402
from vggedge.model.export import export_options, export_vgg16  # noqa: E402
from vggedge.model.vgg16 import VGG16Options  # noqa: E402
from vggedge.spec import PRESETS, ModelSpec  # noqa: E402

#: Keras-CV option sets: (include_rescaling, include_top, num_classes, pooling, input_shape, activation)
CASES = {
    "top+rescaling-64": dict(include_rescaling=True, include_top=True, num_classes=5, pooling=None,
                             input_shape=(64, 64, 3), classifier_activation="softmax"),
    "avg-notop-32": dict(include_rescaling=False, include_top=False, num_classes=None, pooling="avg",
                         input_shape=(32, 32, 3), classifier_activation="softmax"),
    "notop-64x96": dict(include_rescaling=False, include_top=False, num_classes=None, pooling=None,
                        input_shape=(64, 96, 3), classifier_activation="softmax"),
    "top-logits-64": dict(include_rescaling=False, include_top=True, num_classes=3, pooling=None,
                          input_shape=(64, 64, 3), classifier_activation=None),
}


def keras_cv_backbone(case: dict):
    """Keras-CV 0.9's own VGG16Backbone."""
    try:
        from keras_cv.models import VGG16Backbone
    except Exception as exc:  # keras-cv absent, or its TensorFlow dependency absent
        pytest.skip(f"keras-cv not importable ({type(exc).__name__}: {exc}); "
                    "the keras.applications producer still runs")
    return VGG16Backbone(**case)


def keras_applications(case: dict):
    """keras.applications.VGG16 (Keras layer names), with Keras-CV's Rescaling(1/255) in front when asked."""
    inputs = keras.Input(case["input_shape"])
    x = keras.layers.Rescaling(1 / 255)(inputs) if case["include_rescaling"] else inputs
    return keras.applications.VGG16(include_top=case["include_top"], weights=None, input_tensor=x,
                                    pooling=case["pooling"], classes=case["num_classes"] or 1000,
                                    classifier_activation=case["classifier_activation"])


PRODUCERS = {"keras-cv": keras_cv_backbone, "keras-applications": keras_applications}


def randomised(model, seed: int = 0):
    """Non-zero biases too (Keras initialises them to 0), so a swapped bias cannot hide."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if len(weights) == 2:
            kernel, bias = weights
            layer.set_weights([kernel, rng.uniform(-0.1, 0.1, bias.shape).astype(np.float32)])
    return model


def ort_output(onnx_path: Path, pixels_nhwc: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return session.run(None, {"images": np.ascontiguousarray(pixels_nhwc.transpose(0, 3, 1, 2))})[0]


def first_kernel(onnx_path: Path) -> np.ndarray:
    """block1_conv1's kernel (OIHW) as stored in the exported graph."""
    model = onnx.load(str(onnx_path))
    return next(numpy_helper.to_array(t) for t in model.graph.initializer if t.name == "block1_conv1.kernel")


@pytest.fixture(scope="module")
def pixels() -> dict[tuple[int, int], np.ndarray]:
    rng = np.random.default_rng(3)
    return {(h, w): rng.uniform(0, 255, (2, h, w, 3)).astype(np.float32) for h, w in ((32, 32), (64, 64), (64, 96))}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("producer", sorted(PRODUCERS))
def test_keras_files_match_keras(tmp_path: Path, pixels, producer: str, case: str) -> None:
    opts = CASES[case]
    model = randomised(PRODUCERS[producer](opts))
    x = pixels[opts["input_shape"][:2]]
    want = keras.ops.convert_to_numpy(model(x))
    model.save_weights(tmp_path / "m.weights.h5")
    model.save(tmp_path / "m.keras")
    del model

    # .weights.h5: the options and the preprocessing come from the user
    options = VGG16Options(**opts)
    stated = PRESETS["unit"] if opts["include_rescaling"] else PRESETS["raw"]
    done = export_vgg16(tmp_path / "m.weights.h5", tmp_path / "h5.onnx", options, preprocessing=stated)
    assert relative_error(ort_output(done.onnx_path, x), want) < 1e-4
    assert done.spec.preprocessing == PRESETS["raw"]  # raw pixels either way: rescaling is in the graph

    # .keras: the options come from config.json
    assert dataclasses.replace(export_options(tmp_path / "m.keras"), name=options.name) == options
    stated = None if opts["include_rescaling"] else PRESETS["raw"]
    done = export_vgg16(tmp_path / "m.keras", tmp_path / "archive.onnx", preprocessing=stated)
    got = ort_output(done.onnx_path, x)
    assert got.shape == want.shape
    assert relative_error(got, want) < 1e-4
    assert done.spec.weights_source == "keras-archive" and done.spec.num_classes == opts["num_classes"]


@pytest.fixture(scope="module")
def top_files(tmp_path_factory: pytest.TempPathFactory, pixels):
    """One include_top + rescaling model (Keras-CV's when it installs), its files and Keras's output."""
    folder = tmp_path_factory.mktemp("keras_top")
    opts = CASES["top+rescaling-64"]
    try:
        model = keras_cv_backbone(opts)
    except pytest.skip.Exception:
        model = keras_applications(opts)
    model = randomised(model, seed=1)
    x = pixels[(64, 64)]
    want = keras.ops.convert_to_numpy(model(x))
    model.save_weights(folder / "m.weights.h5")
    model.save(folder / "m.keras")
    yield folder, x, want


def test_cli_exports_a_keras_archive_with_no_further_flags(top_files, capsys) -> None:
    folder, x, want = top_files
    out = folder / "cli.onnx"
    assert main(["export", "--weights", str(folder / "m.keras"), "--out", str(out)]) == 0
    spec = ModelSpec.load(folder / "cli.spec.json")
    assert (spec.height, spec.width, spec.num_classes, spec.output_kind) == (64, 64, 5, "probabilities")
    assert spec.preprocessing == PRESETS["raw"]  # RGB 0..255: the graph divides by 255
    assert relative_error(ort_output(out, x), want) < 1e-4


def test_channel_order_rewires_only_when_it_differs(top_files) -> None:
    """Keras-CV weights take RGB: asking for RGB changes nothing; asking for BGR rewires conv1_1."""
    folder, x, want = top_files
    same = export_vgg16(folder / "m.keras", folder / "rgb.onnx", channel_order="RGB")
    assert same.spec.preprocessing.channel_order == "RGB"
    assert relative_error(ort_output(same.onnx_path, x), want) < 1e-4
    bgr = export_vgg16(folder / "m.keras", folder / "bgr.onnx", channel_order="BGR")
    assert bgr.spec.preprocessing.channel_order == "BGR"
    assert relative_error(ort_output(bgr.onnx_path, x[..., ::-1]), want) < 1e-4
    rgb_kernel, bgr_kernel = first_kernel(same.onnx_path), first_kernel(bgr.onnx_path)
    assert np.array_equal(bgr_kernel, rgb_kernel[:, ::-1]) and not np.array_equal(bgr_kernel, rgb_kernel)


def test_weights_h5_needs_the_preprocessing_stated(top_files, capsys) -> None:
    folder, x, want = top_files
    base = ["export", "--weights", str(folder / "m.weights.h5"), "--out", str(folder / "w.onnx"),
            "--include-rescaling", "--num-classes", "5", "--input-shape", "64,64,3"]
    assert main(base) == 1
    assert re.search(r"m\.weights\.h5: a keras3 file does not say what input its weights expect; state it: "
                     r"--preprocessing unit\|keras-rescaling", capsys.readouterr().err)
    assert main([*base, "--preprocessing", "keras-rescaling"]) == 0
    assert relative_error(ort_output(folder / "w.onnx", x), want) < 1e-4


def test_wrong_options_name_the_layer_and_shapes(top_files) -> None:
    folder, _, _ = top_files
    opts = dict(CASES["top+rescaling-64"], num_classes=7)
    with pytest.raises(WeightsError, match=r"m\.weights\.h5: layer 16 of 16 \('predictions', group "
                                           r"'layers/dense_2'\) has kernel \(4096, 5\) .* expected kernel "
                                           r"\(4096, 7\) .*\(num_classes=7\)"):
        export_vgg16(folder / "m.weights.h5", folder / "x.onnx", VGG16Options(**opts), preprocessing=PRESETS["unit"])
    opts = dict(CASES["top+rescaling-64"], input_shape=(96, 96, 3))
    with pytest.raises(WeightsError, match=r"layer 14 of 16 \('fc1', group 'layers/dense'\) has kernel "
                                           r"\(2048, 4096\) .* expected kernel \(4608, 4096\).*512 x 3x3"):
        export_vgg16(folder / "m.keras", folder / "x.onnx", VGG16Options(**opts))
