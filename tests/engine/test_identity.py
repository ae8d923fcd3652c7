"""identity.py: the engine sidecar, file naming, and the checks before TensorRT sees a plan."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from vggedge.errors import ConfigError, EngineMismatch, ModelError
from vggedge.engine.identity import (EngineIdentity, calibration_details, check_identity, engine_filename,
                                     gpu_slug, normalise_cc, rebuild_command, sidecar_path)
from vggedge.spec import ModelSpec

SHA = "0123456789abcdef" * 4
OTHER_SHA = "fedcba9876543210" * 4
ONNX = "models/vgg16.fp16.onnx"
HERE = dict(model_sha256=SHA, trt_version="10.3.0", gpu_name="Orin", compute_capability="8.7")


@pytest.fixture
def identity() -> EngineIdentity:
    return EngineIdentity(SHA, "fp16", (1, 8, 32), "10.3.0", "Orin", "8.7",
                          spec=ModelSpec(precision="fp16"), model_path=ONNX)


def _saved_and_loaded(tmp_path: Path, ident: EngineIdentity) -> EngineIdentity:
    plan = tmp_path / "engines" / ident.filename()
    plan.parent.mkdir()
    plan.write_bytes(b"plan")
    ident.save(plan)
    return EngineIdentity.load(plan)


def test_json_round_trip(tmp_path: Path, identity: EngineIdentity) -> None:
    ident = dataclasses.replace(identity, calibration=calibration_details("minmax", OTHER_SHA, 512))
    loaded = _saved_and_loaded(tmp_path, ident)
    assert loaded == ident
    data = json.loads(sidecar_path(tmp_path / "engines" / ident.filename()).read_text())
    assert data["identity_version"] == 1 and data["batch"] == [1, 8, 32]
    assert data["calibration"] == {"method": "minmax", "calib_sha256": OTHER_SHA, "images": 512}
    assert data["spec"]["precision"] == "fp16" and data["vggedge_version"]


def test_sidecar_beside_plan() -> None:
    assert sidecar_path("engines/vgg16-x.plan") == Path("engines/vgg16-x.engine.json")


def test_engine_filename(identity: EngineIdentity) -> None:
    assert identity.filename() == "vgg16-01234567-fp16-b1-8-32-trt10.3-sm87-orin.plan"
    name = engine_filename(SHA, "int8", (2, 4, 8), "8.5.2.2", "NVIDIA GeForce RTX 4090", (8, 9), name="my vgg")
    assert name == "my-vgg-01234567-int8-b2-4-8-trt8.5-sm89-geforce-rtx-4090.plan"


@pytest.mark.parametrize("raw,slug", [("Orin", "orin"), ("NVIDIA H100 80GB HBM3", "h100-80gb-hbm3"),
                                      ("Orin (nvgpu)", "orin-nvgpu"), ("../../etc", "etc"), ("", "gpu")])
def test_gpu_slug_is_file_safe(raw: str, slug: str) -> None:
    assert gpu_slug(raw) == slug


@pytest.mark.parametrize("raw,cc", [("8.7", "8.7"), ((9, 0), "9.0"), ("sm87", "8.7"), ("sm_100", "10.0")])
def test_normalise_cc(raw, cc: str) -> None:
    assert normalise_cc(raw) == cc


def test_bad_cc_and_precision() -> None:
    with pytest.raises(ConfigError, match="compute capability"):
        normalise_cc("ampere")
    with pytest.raises(ConfigError, match="fp32, fp16, int8"):
        engine_filename(SHA, "bf16", (1, 8, 32), "10.3.0", "Orin", "8.7")


def test_matching_identity_passes(tmp_path: Path, identity: EngineIdentity) -> None:
    loaded = _saved_and_loaded(tmp_path, identity)
    check_identity(loaded, **HERE, precision="fp16", batch=(1, 8, 32))
    check_identity(loaded, **{**HERE, "trt_version": "10.3.1.5"})  # same major.minor
    check_identity(loaded, **{**HERE, "model_sha256": None}, batch=32)  # one size inside the profile


# field -> (sidecar change, expected text naming the field and both values)
DIFFERENT = {
    "model hash": ({"model_sha256": OTHER_SHA}, ["model sha256", OTHER_SHA, SHA]),
    "TensorRT version": ({"tensorrt_version": "10.16.0"}, ["TensorRT version", "10.16.0", "10.3.0"]),
    "GPU name": ({"gpu_name": "NVIDIA H100 80GB HBM3"}, ["GPU name", "NVIDIA H100 80GB HBM3", "Orin"]),
    "compute capability": ({"compute_capability": "9.0"}, ["compute capability", "9.0", "8.7"]),
    "precision": ({"precision": "int8"}, ["precision", "int8", "fp16"]),
    "batch": ({"batch": (1, 4, 16)}, ["batch profile", "1,4,16", "1,8,32"]),
}


@pytest.mark.parametrize("field", list(DIFFERENT))
def test_each_difference_is_named(tmp_path: Path, identity: EngineIdentity, field: str) -> None:
    change, expected = DIFFERENT[field]
    sidecar = _saved_and_loaded(tmp_path, dataclasses.replace(identity, **change))
    with pytest.raises(EngineMismatch) as info:
        check_identity(sidecar, **HERE, precision="fp16", batch=(1, 8, 32))
    message = str(info.value)
    for text in expected:
        assert text in message
    assert message.count("\n  - ") == 1
    assert f"vggedge build --model {ONNX} --precision fp16 --batch 1,8,32" in message


def test_several_differences_all_listed(identity: EngineIdentity) -> None:
    with pytest.raises(EngineMismatch) as info:
        check_identity(identity, model_sha256=OTHER_SHA, trt_version="8.6.2", gpu_name="Tesla T4",
                       compute_capability="7.5", precision="int8", batch=(1, 4, 16), plan_path="engines/x.plan")
    message = str(info.value)
    assert message.startswith("engines/x.plan cannot be used here")
    for label in ("model sha256", "TensorRT version", "GPU name", "compute capability", "precision",
                  "batch profile"):
        assert label in message
    assert message.count("\n  - ") == 6
    assert f"vggedge build --model {ONNX} --precision int8 --batch 1,4,16" in message


def test_batch_size_outside_profile(identity: EngineIdentity) -> None:
    with pytest.raises(EngineMismatch, match=r"batch size: built for 1\.\.32, requested 64(.|\n)*--batch 1,8,64"):
        check_identity(identity, **HERE, batch=64)


def test_rebuild_command_quotes_paths() -> None:
    assert rebuild_command("my models/v.onnx", "fp32", (1, 1, 1)) == \
        "vggedge build --model 'my models/v.onnx' --precision fp32 --batch 1,1,1"
    assert "--model <model.onnx>" in rebuild_command(None, "fp16", (1, 8, 32))


def test_missing_sidecar_says_how_to_rebuild(tmp_path: Path) -> None:
    with pytest.raises(EngineMismatch, match="no engine sidecar(.|\n)*vggedge build --model"):
        EngineIdentity.load(tmp_path / "x.plan")


@pytest.mark.parametrize("content,match", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "JSON object"),
    (json.dumps({"model_sha256": SHA, "surprise": 1}), "unknown engine sidecar fields"),
    (json.dumps({"model_sha256": SHA}), "invalid"),
    (json.dumps({"identity_version": 99}), "identity_version 99"),
])
def test_bad_sidecars(tmp_path: Path, content: str, match: str) -> None:
    sidecar_path(tmp_path / "x.plan").write_text(content)
    with pytest.raises(ModelError, match=match):
        EngineIdentity.load(tmp_path / "x.plan")


def test_sidecar_with_bad_values(tmp_path: Path, identity: EngineIdentity) -> None:
    data = identity.to_dict()
    data["tensorrt_version"] = "banana"
    sidecar_path(tmp_path / "x.plan").write_text(json.dumps(data))
    with pytest.raises(ModelError, match="banana"):
        EngineIdentity.load(tmp_path / "x.plan")
