"""Tests for vggedge.runtime.select: probes, auto selection, forced backends and skip reasons."""
from __future__ import annotations

import ctypes
import logging
from pathlib import Path

import onnx
import pytest

from vggedge.errors import BackendUnavailable, ConfigError
from vggedge.model.vgg16 import VGG16Options, build_onnx, random_weights
from vggedge.runtime import select
from vggedge.runtime.ort import OrtRunner
from vggedge.runtime.select import Backend, availability, gpu_reason, select_runner

OPTS = VGG16Options(include_rescaling=False, include_top=False, pooling="avg", input_shape=(32, 32, 3))
CPU_ONLY = select.probe_trt() is not None and select.probe_ort_cuda() is not None
cpu_only = pytest.mark.skipif(not CPU_ONLY, reason="this machine has TensorRT or onnxruntime CUDA")


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("select") / "small.onnx"
    onnx.save(build_onnx(random_weights(OPTS), OPTS), path)
    return path


def fake_trt(monkeypatch: pytest.MonkeyPatch, runner_path: str = "vggedge.runtime.gpu.trt:TrtRunner") -> None:
    """Register a 'trt' backend whose probe passes (as on a machine with TensorRT and a GPU)."""
    monkeypatch.setitem(select.BACKENDS, "trt", Backend("trt", runner_path, lambda: None, "engine"))


@cpu_only
def test_auto_picks_ort_cpu_with_reasons(model_path: Path) -> None:
    chosen = select_runner(model_path, "auto")
    assert chosen.backend == "ort-cpu"
    assert isinstance(chosen.runner, OrtRunner) and not chosen.runner.active
    assert chosen.runner.model == model_path
    reasons = dict(chosen.skipped)
    assert [name for name, _ in chosen.skipped] == ["trt", "ort-cuda"]
    assert reasons["trt"] == select.probe_trt()
    if select._module_missing("tensorrt"):
        assert reasons["trt"] == "Python package 'tensorrt' is not installed"
    assert "CUDAExecutionProvider" in reasons["ort-cuda"] or "onnxruntime-gpu" in reasons["ort-cuda"]
    with chosen.runner as run:
        assert run.providers() == ["CPUExecutionProvider"]


@cpu_only
def test_auto_logs_one_info_line_per_skip(model_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="vggedge.runtime.select")
    select_runner(model_path)
    lines = [r for r in caplog.records if r.name == "vggedge.runtime.select"]
    assert [r.levelno for r in lines] == [logging.INFO, logging.INFO]
    assert lines[0].getMessage().startswith("backend trt skipped: ")
    assert lines[1].getMessage().startswith("backend ort-cuda skipped: ")


@cpu_only
def test_forced_trt_unavailable(model_path: Path) -> None:
    reason = select.probe_trt()
    with pytest.raises(BackendUnavailable, match=r"backend 'trt' cannot run here: ") as info:
        select_runner(model_path, "trt")
    assert reason in str(info.value)


def test_forced_ort_cpu(model_path: Path) -> None:
    chosen = select_runner(model_path, "ort-cpu")
    assert chosen.backend == "ort-cpu" and chosen.skipped == []


def test_unknown_backend_lists_choices(model_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"backend 'cuda' is unknown; choose auto or one of "
                                          r"\['ort-cpu', 'ort-cuda', 'trt'\]"):
        select_runner(model_path, "cuda")


def test_trt_probe_passes_but_no_engine(model_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_trt(monkeypatch)
    chosen = select_runner(model_path, "auto", engine=None)
    assert chosen.skipped[0] == ("trt", "no TensorRT engine built for this model (run `vggedge build`)")
    assert chosen.backend in ("ort-cuda", "ort-cpu")
    chosen = select_runner(model_path, "auto", engine_reason="engine built for another GPU")
    assert chosen.skipped[0] == ("trt", "engine built for another GPU")
    with pytest.raises(BackendUnavailable, match=r"backend 'trt' cannot run here: no TensorRT engine built"):
        select_runner(model_path, "trt")


def test_engine_backend_gets_the_engine_path(model_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    fake_trt(monkeypatch, runner_path="vggedge.runtime.ort:OrtRunner")  # stands in for TrtRunner
    engine = tmp_path / "small.engine"
    chosen = select_runner(model_path, "auto", engine=engine)
    assert chosen.backend == "trt" and chosen.skipped == []
    assert chosen.runner.model == engine


def test_nothing_usable(model_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, entry in list(select.BACKENDS.items()):
        monkeypatch.setitem(select.BACKENDS, name,
                            Backend(name, entry.runner_path, lambda n=name: f"{n} is broken", entry.artefact))
    with pytest.raises(BackendUnavailable, match=r"no backend can run here: trt: trt is broken; "
                                                 r"ort-cuda: ort-cuda is broken; ort-cpu: ort-cpu is broken"):
        select_runner(model_path)


def test_availability_ort_cpu_usable() -> None:
    found = availability()
    assert set(found) == {"trt", "ort-cuda", "ort-cpu"}
    assert found["ort-cpu"] is None
    assert all(v is None or isinstance(v, str) for v in found.values())


def test_missing_module_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    assert select._module_missing("onnxruntime") is None
    assert select._module_missing("no_such_module_xyz") == "Python package 'no_such_module_xyz' is not installed"


def test_gpu_reason_here() -> None:
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        assert gpu_reason() == "no NVIDIA driver (libcuda.so.1 not found): no GPU on this machine"
    else:
        pytest.skip("this machine has an NVIDIA driver")


class FakeDriver:
    """Stands in for libcuda: cuInit and cuDeviceGetCount with a chosen device count."""

    def __init__(self, count: int, init_status: int = 0) -> None:
        self.count, self.init_status = count, init_status

    def cuInit(self, flags: int) -> int:  # noqa: N802 (CUDA's name)
        return self.init_status

    def cuDeviceGetCount(self, ref) -> int:  # noqa: N802
        ref._obj.value = self.count
        return 0


@pytest.mark.parametrize("driver, expected", [
    (FakeDriver(0), "the NVIDIA driver reports no usable GPU"),
    (FakeDriver(2, init_status=100), "the NVIDIA driver reports no usable GPU"),
    (FakeDriver(1), None),
])
def test_gpu_reason_with_fake_driver(monkeypatch: pytest.MonkeyPatch, driver: FakeDriver,
                                     expected: str | None) -> None:
    monkeypatch.setattr(ctypes, "CDLL", lambda name: driver)
    assert gpu_reason() == expected
