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

import sys
import types
from pathlib import Path
from typing import Callable, Iterator

import onnx
import pytest

from vggedge.engine.identity import EngineIdentity
from vggedge.model.export import export_vgg16
from vggedge.catalogue import file_sha256
from vggedge.runtime import select
from vggedge.runtime.ort import OrtOptions, OrtRunner
from vggedge.spec import ModelSpec, load_spec_for, spec_path_for

from clips import calib_frames, write_clip  # tests/clips.py: shared by the stream tests
from small_models import link_model, options_32, remove, write_tiny_net

FAKE_TRT_VERSION = "10.3.0"
FAKE_GPU = ("Orin", "8.7")
STANDIN_MODULE = "vggedge_test_engine_standin"


@pytest.fixture(scope="session")
def vgg32(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Path]]:
    """``vgg32(weights="random:5", num_classes=10)``: a 32x32 VGG16 (ONNX + spec), exported once per session.

    Shared read-only: a test that writes beside it takes a copy (``small_models.link_model``).
    """
    root = tmp_path_factory.mktemp("vgg32")
    made: dict[tuple[str, int], Path] = {}

    def get(weights: str = "random:5", num_classes: int = 10) -> Path:
        if (weights, num_classes) not in made:
            folder = root / f"{weights.replace(':', '-')}-{num_classes}"
            folder.mkdir()
            made[weights, num_classes] = export_vgg16(weights, folder / "m.onnx", options_32(num_classes)).onnx_path
        return made[weights, num_classes]

    yield get
    remove(root)  # ~135 MB per model


@pytest.fixture(scope="session")
def ten_class_model(vgg32: Callable[..., Path]) -> Path:
    """A 32x32, 10-class random VGG16 (ONNX + spec) shared by the session; removed at the end."""
    return vgg32("random:5", 10)


@pytest.fixture(scope="session")
def cpu_int8_model(tmp_path_factory: pytest.TempPathFactory, ten_class_model: Path) -> Path:
    """The 10-class model (hard-linked) with the INT8 files this CPU's variants run, written beside it."""
    from vggedge.runtime.cpu.variants import prepare_variants

    path = link_model(ten_class_model, tmp_path_factory.mktemp("cpu_int8"), "m.onnx")
    prepare_variants(path, Path(__file__).parent.parent / "calib")
    return path


@pytest.fixture
def model_copy(ten_class_model: Path, tmp_path: Path) -> Path:
    """The shared 10-class model, hard-linked (or copied) into a fresh folder of its own."""
    return link_model(ten_class_model, tmp_path)


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


class DecodeSpy:
    """Records the flags of every ``cv2.imdecode`` call (any thread)."""

    def __init__(self) -> None:
        self.flags: list[int] = []

    @property
    def reduced(self) -> list[bool]:
        """Per decode: was it one of libjpeg's reduced scales (1/2, 1/4, 1/8)?"""
        import cv2

        scales = {cv2.IMREAD_REDUCED_COLOR_2, cv2.IMREAD_REDUCED_COLOR_4, cv2.IMREAD_REDUCED_COLOR_8}
        return [(f & ~cv2.IMREAD_IGNORE_ORIENTATION) in scales for f in self.flags]


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> DecodeSpy:
    """Spy on OpenCV's decoder, with the reduced-decode switch off (module flag and environment)."""
    import cv2

    import vggedge
    from vggedge.preprocess import preprocess

    spy = DecodeSpy()
    real = cv2.imdecode

    def imdecode(buf, flags):
        spy.flags.append(flags)
        return real(buf, flags)

    monkeypatch.setattr(cv2, "imdecode", imdecode)
    monkeypatch.delenv("VGGEDGE_REDUCED_DECODE", raising=False)
    monkeypatch.setattr(sys.modules["vggedge.preprocess"], "REDUCED_DECODE", False)
    monkeypatch.setattr(preprocess, "REDUCED_DECODE", False, raising=False)
    assert vggedge.preprocess is preprocess  # the exported function: see reduced_decode_enabled()
    return spy


@pytest.fixture(scope="session")
def stream_model(vgg32: Callable[..., Path]) -> Path:
    """A 32x32 VGG16 with data-normalised weights and 1000 classes (fast on 2 cores, stable top-1 on photos)."""
    return vgg32("normalised:0", 1000)


@pytest.fixture(scope="session")
def calib_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """calib/ photos at 160x120, each held for HOLD frames, 10 fps (12 * 3 = 36 frames)."""
    return write_clip(tmp_path_factory.mktemp("clips") / "calib.avi", calib_frames())


# --- issue 15: a tiny 4-layer classifier in the exported models' I/O form, for mixed-precision tests ---------
# (``images`` NCHW 32x32 -> ``predictions``, 10 classes: quantizing it takes a second, so a search that
# quantizes once per layer stays fast.)


@pytest.fixture(scope="session")
def tiny_net(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny 4-layer net (conv1, conv2, conv3, fc) with its spec, shared by the session."""
    return write_tiny_net(tmp_path_factory.mktemp("tiny_net") / "tiny.onnx")
# --- end issue 15 ---------------------------------------------------------------------------------------------
