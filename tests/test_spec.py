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
