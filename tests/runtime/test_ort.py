"""Tests for vggedge.runtime.ort (and the Runner contract in runtime.base) on a 32x32 VGG16."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import pytest

from vggedge.errors import InputError, ModelError, VggEdgeError
from vggedge.model.vgg16 import VGG16Options, build_onnx, random_weights
from vggedge.runtime.base import TensorMeta
from vggedge.runtime.ort import OrtOptions, OrtRunner

OPTS = VGG16Options(include_rescaling=False, include_top=False, pooling="avg", input_shape=(32, 32, 3))
SHAPE_TEXT = re.escape("(N, 3, 32, 32)")


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ort") / "small.onnx"
    onnx.save(build_onnx(random_weights(OPTS), OPTS), path)
    return path


@pytest.fixture(scope="module")
def runner(model_path: Path):
    with OrtRunner(model_path, OrtOptions(intra_op_threads=1)) as active:
        yield active


def batch(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, 3, 32, 32)).astype(np.float32)


def test_infer_before_activate(model_path: Path) -> None:
    fresh = OrtRunner(model_path)
    assert not fresh.active and fresh.session is None
    with pytest.raises(VggEdgeError, match=r"ort-cpu: infer\(\) called before activate\(\)"):
        fresh.infer({"images": batch(1)})
    with pytest.raises(VggEdgeError, match="activate"):
        fresh.input_metadata()


def test_input_metadata(runner: OrtRunner) -> None:
    meta = runner.input_metadata()
    assert meta == {"images": TensorMeta("images", np.dtype(np.float32), (None, 3, 32, 32))}
    assert meta["images"].shape_text() == "(N, 3, 32, 32)"


def test_wrong_input_name(runner: OrtRunner) -> None:
    with pytest.raises(InputError, match=r"inputs missing \['images'\], unexpected \['pixels'\]; "
                                         r"expected \['images'\]"):
        runner.infer({"pixels": batch(1)})


def test_wrong_dtype(runner: OrtRunner) -> None:
    with pytest.raises(InputError, match=r"input 'images': dtype float64, expected float32"):
        runner.infer({"images": batch(1).astype(np.float64)})


def test_wrong_channel_count(runner: OrtRunner) -> None:
    bad = np.zeros((1, 4, 32, 32), dtype=np.float32)
    with pytest.raises(InputError, match=r"input 'images': shape \(1, 4, 32, 32\), expected " + SHAPE_TEXT):
        runner.infer({"images": bad})
    with pytest.raises(InputError, match=SHAPE_TEXT):
        runner.infer({"images": np.zeros((3, 32, 32), dtype=np.float32)})


def test_dynamic_batch_matches_single_runs(runner: OrtRunner) -> None:
    one = runner.infer({"images": batch(1)})
    assert list(one) == ["avg_pool"] and one["avg_pool"].shape == (1, 512)
    images = batch(3, seed=1)
    together = runner.infer({"images": images})["avg_pool"].copy()
    assert together.shape == (3, 512) and together.dtype == np.float32
    singles = np.concatenate([runner.infer({"images": images[i:i + 1]})["avg_pool"].copy() for i in range(3)])
    np.testing.assert_allclose(together, singles, atol=1e-5, rtol=1e-5)
    assert not np.allclose(together[0], together[1])  # different images, different features


def test_providers_and_describe(runner: OrtRunner) -> None:
    assert runner.providers() == ["CPUExecutionProvider"]
    assert runner.describe() == f"ort-cpu (CPUExecutionProvider, {Path(runner.model).name})"


def test_lifecycle_with_and_double_deactivate(model_path: Path) -> None:
    run = OrtRunner(model_path)
    with run as entered:
        assert entered is run and run.active
        assert run.infer({"images": batch(2)})["avg_pool"].shape == (2, 512)
    assert not run.active and run.session is None
    assert run.describe() == f"ort-cpu (inactive, {model_path.name})"
    run.deactivate()
    run.deactivate()
    with pytest.raises(VggEdgeError, match="activate"):
        run.infer({"images": batch(1)})
    assert run.activate() is run and run.activate() is run  # re-activation works, twice is a no-op
    run.deactivate()


def test_model_from_bytes(model_path: Path, runner: OrtRunner) -> None:
    images = batch(1, seed=5)
    with OrtRunner(model_path.read_bytes()) as from_bytes:
        got = from_bytes.infer({"images": images})["avg_pool"]
    np.testing.assert_allclose(got, runner.infer({"images": images})["avg_pool"], atol=1e-5, rtol=1e-5)


def test_missing_model_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.onnx"
    run = OrtRunner(path)  # construction touches nothing
    with pytest.raises(ModelError, match=re.escape(str(path)) + ": ONNX model file not found"):
        run.activate()
    assert not run.active


def test_garbage_model_file(tmp_path: Path) -> None:
    path = tmp_path / "garbage.onnx"
    path.write_bytes(b"\x00\xffnot an onnx protobuf" * 50)
    with pytest.raises(ModelError, match=re.escape(str(path)) + ": onnxruntime could not load the model"):
        OrtRunner(path).activate()
    with pytest.raises(ModelError, match="<bytes>: onnxruntime could not load"):
        OrtRunner(b"garbage").activate()
