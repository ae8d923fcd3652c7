"""Shared fixtures: a small classifier model, a fake TensorRT machine with built engines, and a
video made from the calib/ photos (stream tests).

The fake machine is the pattern of tests/engine/test_build.py and
tests/runtime/test_cuda_lazy.py: a stand-in ``tensorrt`` module (only its
version is read), a stand-in ``pycuda.driver`` naming one GPU, the ``trt``
probe passing, and a runner class standing in for TrtRunner (which needs real
pycuda): it runs the plan's source ONNX, read from the plan's sidecar, on
onnxruntime. Engine files are fake bytes with real ``.engine.json`` sidecars.
"""
from __future__ import annotations

import shutil
import sys
import types
from pathlib import Path
from typing import Callable, Iterator

import onnx
import pytest

from vggedge.engine.identity import EngineIdentity
from vggedge.model.export import export_vgg16
from vggedge.model.vgg16 import VGG16Options
from vggedge.model.weights.base import file_sha256
from vggedge.runtime import select
from vggedge.runtime.ort import OrtOptions, OrtRunner
from vggedge.spec import ModelSpec, load_spec_for, spec_path_for

from clips import calib_frames, write_clip  # tests/clips.py: shared by the stream tests

TEN_CLASSES = VGG16Options(include_rescaling=False, include_top=True, num_classes=10, input_shape=(32, 32, 3))
FAKE_TRT_VERSION = "10.3.0"
FAKE_GPU = ("Orin", "8.7")
STANDIN_MODULE = "vggedge_test_engine_standin"


@pytest.fixture(scope="session")
def ten_class_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A 32x32, 10-class random VGG16 (ONNX + spec) shared by the session; removed at the end."""
    folder = tmp_path_factory.mktemp("ten_class")
    path = export_vgg16("random:5", folder / "m.onnx", TEN_CLASSES).onnx_path
    yield path
    shutil.rmtree(folder, ignore_errors=True)  # ~75 MB


@pytest.fixture
def model_copy(ten_class_model: Path, tmp_path: Path) -> Path:
    """The shared 10-class model, hard-linked (or copied) into a fresh folder of its own."""
    path = tmp_path / "m.onnx"
    try:
        path.hardlink_to(ten_class_model)
    except OSError:
        shutil.copy(ten_class_model, path)
    shutil.copy(spec_path_for(ten_class_model), spec_path_for(path))
    return path


def write_variant(model: Path, tag: str, precision: str) -> Path:
    """A stand-in precision variant ``m.<tag>.onnx``: the same graph with another doc string (another sha256)."""
    proto = onnx.load(str(model))
    proto.doc_string = f"stand-in {tag} variant"
    path = model.with_name(f"{model.stem}.{tag}.onnx")
    onnx.save(proto, str(path))
    load_spec_for(model).replace(precision=precision).save(spec_path_for(path))
    return path


def write_engine(onnx_path: Path, folder: Path | None = None, *, precision: str | None = None,
                 trt_version: str = FAKE_TRT_VERSION, gpu: tuple[str, str] = FAKE_GPU,
                 batch: tuple[int, int, int] = (1, 8, 32)) -> Path:
    """A fake plan (bytes) with a real sidecar, named as `vggedge build` names it."""
    spec: ModelSpec = load_spec_for(onnx_path)
    precision = precision or spec.precision
    identity = EngineIdentity(file_sha256(onnx_path), precision, batch, trt_version, gpu[0], gpu[1],
                              spec=spec.replace(precision=precision), model_path=str(onnx_path))
    plan = (folder or onnx_path.parent) / identity.filename()
    plan.write_bytes(b"not a real TensorRT plan")
    identity.save(plan)
    return plan


class EngineStandIn(OrtRunner):
    """Stands in for TrtRunner: runs the plan's source ONNX (from its sidecar) on onnxruntime CPU."""

    name = "trt"
    made: list["EngineStandIn"] = []

    def __init__(self, plan, options=None, *, model_path=None, **_: object) -> None:
        identity = EngineIdentity.load(plan)
        super().__init__(identity.model_path, OrtOptions(intra_op_threads=1), options)
        self.plan, self.source = Path(plan), model_path
        EngineStandIn.made.append(self)

    def describe(self) -> str:
        return f"trt ({self.plan.name}, stand-in)"


@pytest.fixture
def fake_trt_machine(monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    """This machine as one with TensorRT 10.3 and an Orin GPU; the trt backend's runner is EngineStandIn."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = FAKE_TRT_VERSION
    driver = types.ModuleType("pycuda.driver")
    driver.init = lambda: None

    class Device:
        def __init__(self, index: int) -> None:
            self.index = index

        def name(self) -> str:
            return FAKE_GPU[0]

        def compute_capability(self) -> tuple[int, int]:
            major, minor = FAKE_GPU[1].split(".")
            return int(major), int(minor)

    driver.Device = Device
    pycuda = types.ModuleType("pycuda")
    pycuda.driver = driver
    standin = types.ModuleType(STANDIN_MODULE)
    standin.EngineStandIn = EngineStandIn
    EngineStandIn.made = []
    for name, module in (("tensorrt", trt), ("pycuda", pycuda), ("pycuda.driver", driver),
                         ("cuda", None), (STANDIN_MODULE, standin)):
        monkeypatch.setitem(sys.modules, name, module)  # "cuda": None -> no cuda-python, pycuda is asked
    monkeypatch.setitem(select.BACKENDS, "trt", select.Backend("trt", f"{STANDIN_MODULE}:EngineStandIn",
                                                               lambda: None, "engine"))
    return types.SimpleNamespace(trt_version=FAKE_TRT_VERSION, gpu=FAKE_GPU, runner=EngineStandIn)


@pytest.fixture
def engine_writer() -> Callable[..., Path]:
    """:func:`write_engine`, as a fixture."""
    return write_engine


@pytest.fixture
def variant_writer() -> Callable[..., Path]:
    """:func:`write_variant`, as a fixture."""
    return write_variant


@pytest.fixture(autouse=True)
def _no_automatic_tuning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VGGEDGE_TUNE", "0")

@pytest.fixture(scope="session")
def stream_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A 32x32 VGG16 with data-normalised weights and 1000 classes (fast on 2 cores, stable top-1 on photos)."""
    from vggedge.model.export import export_vgg16
    from vggedge.model.vgg16 import VGG16Options

    path = tmp_path_factory.mktemp("stream_model") / "vgg16_32.onnx"
    export_vgg16("normalised:0", path, VGG16Options(include_rescaling=False, include_top=True, num_classes=1000,
                                                    input_shape=(32, 32, 3)))
    yield path
    for leftover in path.parent.iterdir():  # about 150 MB: do not leave it in pytest's kept temp folders
        leftover.unlink()


@pytest.fixture(scope="session")
def calib_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """calib/ photos at 160x120, each held for HOLD frames, 10 fps (12 * 3 = 36 frames)."""
    return write_clip(tmp_path_factory.mktemp("clips") / "calib.avi", calib_frames())
