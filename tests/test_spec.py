"""Tests for vggedge.spec: ModelSpec JSON round-trip, validation and sidecar paths."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from vggedge.errors import ModelError
from vggedge.spec import (CAFFE_BGR, TORCHVISION, ModelSpec, Preprocessing, load_spec_for,
                          spec_path_for)


def test_json_round_trip(tmp_path: Path) -> None:
    spec = ModelSpec(name="vgg16-feat", height=64, width=96, layout="NHWC", dtype="float16",
                     output_kind="features", num_classes=None, labels=None, preprocessing=TORCHVISION,
                     weights_source="torchvision", weights_sha256="ab" * 32, precision="fp16",
                     extra={"batch": [1, 8], "note": "x"})
    path = spec.save(tmp_path / "m.spec.json")
    assert path == tmp_path / "m.spec.json"
    data = json.loads(path.read_text())
    assert data["spec_version"] == 1 and data["preprocessing"]["resize"] == "shorter_crop"
    loaded = ModelSpec.load(path)
    assert loaded == spec
    assert loaded.preprocessing.mean == (0.485, 0.456, 0.406)
    assert loaded.input_shape == (-1, 64, 96, 3)


def test_default_round_trip_via_dict() -> None:
    spec = ModelSpec(preprocessing=CAFFE_BGR)
    assert ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert spec.input_shape == (-1, 3, 224, 224)


def test_unknown_field_rejected_naming_it(tmp_path: Path) -> None:
    data = ModelSpec().to_dict()
    data["input_nmae"] = "images"
    with pytest.raises(ModelError, match=r"<dict>: unknown spec fields \['input_nmae'\]"):
        ModelSpec.from_dict(data)
    path = tmp_path / "typo.spec.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ModelError, match=re.escape(str(path)) + r": unknown spec fields \['input_nmae'\]"):
        ModelSpec.load(path)


def test_unknown_preprocessing_field_rejected() -> None:
    data = ModelSpec().to_dict()
    data["preprocessing"]["stdev"] = [1, 1, 1]
    with pytest.raises(ModelError, match=r"m\.spec\.json: unknown preprocessing fields \['stdev'\]"):
        ModelSpec.from_dict(data, source="m.spec.json")


def test_bad_channel_order_rejected() -> None:
    with pytest.raises(ModelError, match=r"channel_order must be one of \('RGB', 'BGR'\), got 'GBR'"):
        Preprocessing(channel_order="GBR")
    data = ModelSpec().to_dict()
    data["preprocessing"]["channel_order"] = "rgb"
    with pytest.raises(ModelError, match=r"channel_order .* got 'rgb'"):
        ModelSpec.from_dict(data)


def test_bad_resize_policy_rejected() -> None:
    with pytest.raises(ModelError, match=r"resize must be one of \('direct', 'shorter_crop'\), got 'stretch'"):
        Preprocessing(resize="stretch")


def test_other_preprocessing_checks() -> None:
    with pytest.raises(ModelError, match="interpolation must be"):
        Preprocessing(interpolation="lanczos")
    with pytest.raises(ModelError, match="mean has 3 values but std has 1"):
        Preprocessing(std=(1.0,))


def test_unsupported_spec_version() -> None:
    data = ModelSpec().to_dict()
    data["spec_version"] = 99
    with pytest.raises(ModelError, match=r"spec_version 99 is not supported \(expected 1\)"):
        ModelSpec.from_dict(data, source="x.spec.json")


def test_load_bad_json_and_missing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.spec.json"
    bad.write_text("{not json")
    with pytest.raises(ModelError, match=re.escape(str(bad)) + ": spec is not valid JSON"):
        ModelSpec.load(bad)
    with pytest.raises(ModelError, match="spec file not found"):
        ModelSpec.load(tmp_path / "none.spec.json")


def test_spec_path_for() -> None:
    assert spec_path_for("a/model.fp16.onnx") == Path("a/model.fp16.spec.json")
    assert spec_path_for(Path("/x/vgg16.engine")) == Path("/x/vgg16.spec.json")


def test_load_spec_for(tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    with pytest.raises(ModelError, match=r"no spec sidecar at .*model\.spec\.json.*`vggedge export`"):
        load_spec_for(model)
    spec = ModelSpec(name="side")
    spec.save(spec_path_for(model))
    assert load_spec_for(model) == spec


def test_describe() -> None:
    assert TORCHVISION.describe() == "RGB x0.00392157 - [0.485, 0.456, 0.406] / [0.229, 0.224, 0.225], shorter_crop"


def test_zero_std_refused_in_python_too() -> None:
    with pytest.raises(ModelError, match=r"'preprocessing.std' is \[1.0, 0.0, 1.0\]; std\[1\] = 0.0 would divide"):
        ModelSpec(preprocessing=Preprocessing(std=(1.0, 0.0, 1.0)))


def test_missing_mean_is_not_the_caffe_default(tmp_path: Path) -> None:
    data = ModelSpec(preprocessing=TORCHVISION).to_dict()
    del data["preprocessing"]["mean"]
    path = tmp_path / "m.spec.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ModelError, match=re.escape(str(path)) + r": required spec fields missing: "
                                        r"\['preprocessing.mean'\]"):
        ModelSpec.load(path)


def test_sidecar_checked_against_the_onnx_input(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["images"], ["predictions"])], "g",
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("predictions", TensorProto.FLOAT, ["N", 3, 8, 8])])
    model = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph), str(model))
    ModelSpec(height=8, width=8).save(tmp_path / "m.spec.json")
    assert load_spec_for(model).height == 8
    ModelSpec(height=8, width=16).save(tmp_path / "m.spec.json")
    with pytest.raises(ModelError, match=re.escape(str(tmp_path / "m.spec.json")) + r": field 'width' is 16, but "
                                        r"the model .*m\.onnx takes input 'images' of shape \[N, 3, 8, 8\]"):
        load_spec_for(model)


@pytest.mark.parametrize("pre,message", [
    (dict(std=(58.4, -57.1, 57.4)), r"std\[1\] = -57.1: expected positive values"),
    (dict(std=(1.0, 1.0, 1e9)), r"std\[2\] = 1000000000.0: expected positive values"),
    (dict(mean=(1e12, 0.0, 0.0)), r"'preprocessing.mean'.*within"),
    (dict(scale=1e30), r"'preprocessing.scale' is 1e\+30")])
def test_negative_and_absurd_normalisation_refused(pre: dict, message: str) -> None:
    """Issue 23: a negative std silently flipped the answer; absurd values only mislead."""
    with pytest.raises(ModelError, match=message):
        ModelSpec(preprocessing=Preprocessing(**pre))


def test_absurd_sizes_refused() -> None:
    with pytest.raises(ModelError, match="'height' is 1000000000; expected at most 16384"):
        ModelSpec(height=10**9)
