"""GPU modules import and construct on a machine without GPU packages; activation says why it cannot run."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from vggedge.errors import BackendUnavailable, ConfigError
from vggedge.runtime.base import RunnerOptions
from vggedge.runtime.gpu import cuda as vcuda
from vggedge.runtime import select
from vggedge.spec import TORCHVISION, ModelSpec, Preprocessing

GPU_MODULES = ("vggedge.runtime.gpu", "vggedge.runtime.gpu.cuda", "vggedge.runtime.gpu.pipeline",
               "vggedge.runtime.gpu.runner", "vggedge.runtime.gpu.trt", "vggedge.runtime.gpu.ort_cuda",
               "vggedge.runtime.gpu.gpu_preprocess")
HEAVY = ("pycuda", "tensorrt")


def test_imports_load_no_gpu_package() -> None:
    code = textwrap.dedent(f"""
        import json, sys
        import vggedge
        assert not [m for m in sys.modules if m.split(".")[0] in {HEAVY!r} or m.startswith("vggedge.runtime.gpu")]
        for name in {GPU_MODULES!r}:
            __import__(name)
        from vggedge.runtime.gpu.trt import TrtRunner
        from vggedge.runtime.gpu.ort_cuda import OrtCudaRunner
        TrtRunner("missing.plan"); OrtCudaRunner("missing.onnx")
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


@pytest.fixture()
def no_gpu_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any import of pycuda/tensorrt fail and any GPU probe explode: construction must not try."""
    for name in ("pycuda", "pycuda.driver", "pycuda.autoinit", "tensorrt"):
        monkeypatch.setitem(sys.modules, name, None)

    def no_probe() -> str:
        raise AssertionError("constructing a runner probed the GPU")

    monkeypatch.setattr(select, "gpu_reason", no_probe)


def test_construction_touches_no_gpu(no_gpu_packages: None) -> None:
    from vggedge.runtime.gpu.gpu_preprocess import GpuPreprocessor
    from vggedge.runtime.gpu.ort_cuda import OrtCudaRunner
    from vggedge.runtime.gpu.trt import TrtRunner

    trt, ort = TrtRunner("engines/x.plan", RunnerOptions(slots=3)), OrtCudaRunner("x.onnx", RunnerOptions(max_batch=4))
    assert not trt.active and not ort.active
    assert "inactive" in trt.describe() and "inactive" in ort.describe()
    pre = GpuPreprocessor(ModelSpec())
    assert pre.nhwc == 0 and pre.gain == (1.0, 1.0, 1.0)


@pytest.mark.parametrize("runner_path", ["vggedge.runtime.gpu.trt:TrtRunner", "vggedge.runtime.gpu.ort_cuda:OrtCudaRunner"])
def test_activation_without_cuda_raises_backend_unavailable(monkeypatch: pytest.MonkeyPatch, runner_path: str) -> None:
    monkeypatch.setattr(vcuda, "cuda_available", lambda: "no NVIDIA driver (test)")
    module, _, cls = runner_path.partition(":")
    runner = getattr(__import__(module, fromlist=[cls]), cls)("model.file")
    with pytest.raises(BackendUnavailable, match=r"cannot run here: no NVIDIA driver \(test\)"):
        runner.activate()
    assert not runner.active


@pytest.mark.skipif(vcuda.cuda_available() is None, reason="this machine has pycuda and a GPU")
@pytest.mark.parametrize("runner_path", ["vggedge.runtime.gpu.trt:TrtRunner", "vggedge.runtime.gpu.ort_cuda:OrtCudaRunner"])
def test_activation_here_gives_the_real_reason(runner_path: str) -> None:
    module, _, cls = runner_path.partition(":")
    runner = getattr(__import__(module, fromlist=[cls]), cls)("model.file")
    with pytest.raises(BackendUnavailable) as info:  # not ImportError
        runner.activate()
    assert vcuda.cuda_available() in str(info.value)


def test_cuda_available_names_pycuda(no_gpu_packages: None) -> None:
    # sys.modules["pycuda"] = None makes find_spec raise ValueError: reported as not installed
    assert "pycuda" in vcuda.cuda_available()


def test_check_wraps_only_driver_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    class Error(Exception):
        pass

    class MemoryError_(Error):
        pass

    fake = type(sys)("pycuda.driver")
    fake.Error, fake.MemoryError = Error, MemoryError_
    monkeypatch.setitem(sys.modules, "pycuda.driver", fake)
    with pytest.raises(vcuda.CudaError, match="allocating x failed: boom"):
        with vcuda.check("allocating x"):
            raise Error("boom")
    with pytest.raises(vcuda.CudaOutOfMemory, match="out of GPU memory"):
        with vcuda.check("allocating y"):
            raise MemoryError_("cuMemAlloc failed: out of memory")
    with pytest.raises(KeyError):
        with vcuda.check("unrelated"):
            raise KeyError("not a CUDA error")
    with pytest.raises(vcuda.CudaError, match="execute_async_v3 returned failure; see log"):
        vcuda.check_ok(False, "execute_async_v3", "see log")


def test_gpu_preprocessor_rejects_what_it_cannot_do() -> None:
    from vggedge.runtime.gpu.gpu_preprocess import GpuPreprocessor

    GpuPreprocessor(ModelSpec(preprocessing=TORCHVISION))  # shorter side + centre crop: on the device now
    GpuPreprocessor(ModelSpec(layout="NHWC"))  # so is NHWC
    with pytest.raises(ConfigError, match="interpolates bilinearly.*CPU path"):
        GpuPreprocessor(ModelSpec(preprocessing=Preprocessing(interpolation="area")))


def test_fatbin_targets_rejects_non_fatbin() -> None:
    from vggedge.runtime.gpu.gpu_preprocess import fatbin_targets

    with pytest.raises(vcuda.CudaError, match="not a CUDA fatbin"):
        fatbin_targets(b"\x7fELF" + bytes(40), "x.fatbin")


def test_registry_points_at_the_gpu_runners_and_passes_options(monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    from vggedge.runtime.gpu.ort_cuda import OrtCudaRunner
    from vggedge.runtime.gpu.trt import TrtRunner

    assert select.BACKENDS["trt"].load_class() is TrtRunner
    assert select.BACKENDS["ort-cuda"].load_class() is OrtCudaRunner
    monkeypatch.setitem(select.BACKENDS, "ort-cuda", dataclasses.replace(select.BACKENDS["ort-cuda"], probe=lambda: None))
    chosen = select.select_runner("x.onnx", "ort-cuda", options=RunnerOptions(max_batch=16, slots=3))
    runner = chosen.runner
    assert isinstance(runner, OrtCudaRunner) and not runner.active
    assert (runner.max_batch, runner.num_slots, runner.device) == (16, 3, 0)
