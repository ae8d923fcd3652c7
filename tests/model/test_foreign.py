"""`vggedge import-onnx` with every preset and option: the spec it writes, its messages for bad
values, and the same FP32 output for one normalisation stated in different ways."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from vggedge.cli import main
from vggedge.preprocess import list_images, preprocess
from vggedge.spec import PRESETS, TORCHVISION, ModelSpec, load_spec_for, spec_path_for

REPO = Path(__file__).resolve().parents[2]
PHOTOS = list_images(REPO / "calib")[:4]


def tiny_classifier(path: Path, divide_by_255: bool = False) -> Path:
    """NCHW 3x32x32 -> [x/255 ->] Conv 3x3 -> ReLU -> global average -> Gemm -> Softmax (6 classes)."""
    rng = np.random.default_rng(5)
    inits = [numpy_helper.from_array(rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.normal(0, 0.1, 8).astype(np.float32), "b"),
             numpy_helper.from_array(rng.normal(0, 0.5, (6, 8)).astype(np.float32), "fc"),
             numpy_helper.from_array(np.float32(255.0), "k255")]
    nodes = [helper.make_node("Div", ["images", "k255"], ["scaled"])] if divide_by_255 else []
    first = "scaled" if divide_by_255 else "images"
    nodes += [helper.make_node("Conv", [first, "w", "b"], ["c"], pads=[1, 1, 1, 1]),
              helper.make_node("Relu", ["c"], ["r"]),
              helper.make_node("GlobalAveragePool", ["r"], ["g"]),
              helper.make_node("Flatten", ["g"], ["f"]),
              helper.make_node("Gemm", ["f", "fc"], ["logits"], transB=1),
              helper.make_node("Softmax", ["logits"], ["probs"], axis=-1)]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("images", TensorProto.FLOAT,
                                                                            ["n", 3, 32, 32])],
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["n", 6])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def fp32_output(model: Path) -> np.ndarray:
    spec = load_spec_for(model)
    batch = preprocess(PHOTOS, spec)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return session.run(None, {spec.input_name: batch})[0]


def imported(tmp_path: Path, name: str, *options: str, divide: bool = False) -> tuple[Path, ModelSpec]:
    source = tiny_classifier(tmp_path / f"src_{name}.onnx", divide)
    out = tmp_path / f"{name}.onnx"
    assert main(["import-onnx", str(source), "--out", str(out), *options]) == 0
    return out, ModelSpec.load(spec_path_for(out))


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_each_preset_writes_its_spec(tmp_path: Path, preset: str) -> None:
    _, spec = imported(tmp_path, preset, "--preprocessing", preset)
    assert spec.preprocessing == PRESETS[preset]
    assert (spec.layout, spec.height, spec.num_classes, spec.output_kind) == ("NCHW", 32, 6, "probabilities")


def test_each_option_writes_its_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, spec = imported(tmp_path, "opts", "--scale", "1/255", "--mean", "0.406,0.456,0.485",
                       "--std", "0.225,0.224,0.229", "--channel-order", "BGR", "--resize", "shorter_crop",
                       "--resize-shorter", "288", "--interpolation", "area")
    pre = spec.preprocessing
    assert (pre.channel_order, pre.scale, pre.mean, pre.std) == ("BGR", 1 / 255, (0.406, 0.456, 0.485),
                                                                 (0.225, 0.224, 0.229))
    assert (pre.resize, pre.resize_shorter, pre.interpolation) == ("shorter_crop", 288, "area")
    assert capsys.readouterr().out.splitlines()[-1] == f"preprocessing: {pre.describe()}"
    _, spec = imported(tmp_path, "range", "--mean", "123.675,116.28,103.53", "--std", "58.395,57.12,57.375",
                       "--mean-std-range", "0..255", "--scale", "1/255", "--resize", "shorter_crop")
    assert np.allclose(spec.preprocessing.mean, TORCHVISION.mean) and np.allclose(spec.preprocessing.std,
                                                                                  TORCHVISION.std)


def test_json_file_and_preset_with_override(tmp_path: Path) -> None:
    pre_file = tmp_path / "pre.json"
    pre_file.write_text(json.dumps({"channel_order": "RGB", "scale": "1/127.5", "mean": [1, 1, 1]}))
    _, spec = imported(tmp_path, "json", "--preprocessing", str(pre_file))
    assert spec.preprocessing == PRESETS["tf"]
    _, spec = imported(tmp_path, "override", "--preprocessing", "torchvision", "--resize", "direct")
    assert spec.preprocessing.resize == "direct" and spec.preprocessing.mean == TORCHVISION.mean


@pytest.mark.parametrize("options, message", [
    ([], r"say what input the model expects: --preprocessing PRESET\|FILE\.json"),
    (["--preprocessing", "imagenet"], r"--preprocessing: 'imagenet' is neither a preset \(caffe-rgb, .*tf\)"),
    (["--scale", "1/0"], r"--scale: expected a positive number or fraction such as 1/255"),
    (["--mean", "1,2"], r"--mean: expected 3 comma-separated numbers"),
    (["--mean", "0.485,0.456,0.406"], r"--mean 0\.485,0\.456,0\.406 looks written for pixels/255"),
    (["--channel-order", "GRB"], r"--channel-order: expected one of RGB, BGR; got 'GRB'"),
    (["--resize", "fit"], r"--resize: expected one of direct, shorter_crop; got 'fit'"),
    (["--resize-shorter", "-3"], r"--resize-shorter: expected a positive whole number of pixels"),
    (["--interpolation", "lanczos"], r"--interpolation: expected one of linear, area, cubic, nearest"),
])
def test_bad_values_exit_1_naming_the_option(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             options: list[str], message: str) -> None:
    source = tiny_classifier(tmp_path / "m.onnx")
    assert main(["import-onnx", str(source), *options]) == 1
    err = capsys.readouterr().err
    assert err.startswith("vggedge: error: ") and "Traceback" not in err
    assert re.search(message, err), err
    assert not spec_path_for(source).exists()


def test_unit_matches_explicit_options_and_in_graph_division(tmp_path: Path) -> None:
    """One normalisation three ways: preset `unit`, the same as options (identical FP32 output), and raw
    pixels into a graph that divides by 255 itself (equal to float rounding)."""
    unit, _ = imported(tmp_path, "unit", "--preprocessing", "unit")
    explicit, _ = imported(tmp_path, "explicit", "--scale", "1/255", "--mean", "0,0,0", "--std", "1,1,1",
                           "--channel-order", "RGB", "--resize", "direct")
    in_graph, _ = imported(tmp_path, "in_graph", "--preprocessing", "raw", divide=True)
    want = fp32_output(unit)
    assert np.array_equal(fp32_output(explicit), want)
    np.testing.assert_allclose(fp32_output(in_graph), want, rtol=1e-5, atol=1e-7)
    # and the check has teeth: the same graph fed raw pixels as if they were /255 differs clearly
    wrong, _ = imported(tmp_path, "wrong", "--preprocessing", "raw")
    assert np.abs(fp32_output(wrong) - want).max() > 1e-2
