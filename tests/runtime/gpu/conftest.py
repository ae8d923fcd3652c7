"""Fixtures installing the fake pycuda, TensorRT and onnxruntime of ``gpu_fakes`` (no GPU needed)."""
from __future__ import annotations

import sys
import types
from types import SimpleNamespace

import pytest
from gpu_fakes import FakeDriver, fake_onnxruntime, fake_tensorrt

from vggedge.runtime.gpu import cuda as vcuda


@pytest.fixture()
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> FakeDriver:
    """A fake ``pycuda.driver`` in sys.modules, with a fresh primary-context registry."""
    driver = FakeDriver()
    package = types.ModuleType("pycuda")
    package.driver = driver
    monkeypatch.setitem(sys.modules, "pycuda", package)
    monkeypatch.setitem(sys.modules, "pycuda.driver", driver)
    monkeypatch.setattr(vcuda, "cuda_available", lambda: None)
    monkeypatch.setattr(vcuda, "_PRIMARY", {})
    return driver


@pytest.fixture()
def trt_env(fake_cuda: FakeDriver, monkeypatch: pytest.MonkeyPatch):
    """make(version, io_dtype="FLOAT", profile=(1, 2, 4)) installs a fake tensorrt whose engine load is faked."""
    from vggedge.engine import build, identity

    def make(version: str, io_dtype: str = "FLOAT", profile: tuple[int, int, int] = (1, 2, 4)):
        trt = fake_tensorrt(version, fake_cuda, io_dtype, profile)
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        loaded = SimpleNamespace(engine=trt.engine, identity=SimpleNamespace(precision="fp32"), runtime=None,
                                 log=SimpleNamespace(messages=["[WARNING] fake"]))
        monkeypatch.setattr(build, "load_engine", lambda plan, **kw: loaded)
        monkeypatch.setattr(identity, "gpu_identity", lambda device=0: ("Fake GPU", "9.0"))
        return trt

    return make


@pytest.fixture()
def ort_env(fake_cuda: FakeDriver, monkeypatch: pytest.MonkeyPatch):
    """make(**kw) installs a fake onnxruntime-gpu (see ``gpu_fakes.fake_onnxruntime``)."""
    def make(**kwargs):
        ort = fake_onnxruntime(fake_cuda, **kwargs)
        monkeypatch.setitem(sys.modules, "onnxruntime", ort)
        return ort

    return make
