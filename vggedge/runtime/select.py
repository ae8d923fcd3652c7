"""Backend registry and selection: TensorRT, then onnxruntime CUDA, then onnxruntime CPU.

Backends are imported lazily; every probe returns None when the backend can run
here, or the reason it cannot. Selection returns the runner and one reason per
skipped backend, so ``auto`` never falls back silently.
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import BackendUnavailable, ConfigError
from .base import Runner, RunnerOptions

log = logging.getLogger(__name__)


def _module_missing(module: str) -> str | None:
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    return None if found else f"Python package {module!r} is not installed"


def probe_ort_cpu() -> str | None:
    """onnxruntime with its CPU provider."""
    return _module_missing("onnxruntime")


def probe_ort_cuda() -> str | None:
    """onnxruntime-gpu with a CUDA provider, pycuda (our buffers and streams) and a visible NVIDIA GPU."""
    reason = _module_missing("onnxruntime")
    if reason:
        return reason
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return (f"onnxruntime {ort.__version__} has no CUDAExecutionProvider "
                "(install onnxruntime-gpu: pip install 'vggedge[gpu]')")
    return _module_missing("pycuda") or gpu_reason()


def probe_trt() -> str | None:
    """TensorRT Python bindings, pycuda and a GPU."""
    reason = _module_missing("tensorrt") or _module_missing("pycuda")
    return reason or gpu_reason()


def gpu_reason() -> str | None:
    """None if the CUDA driver reports at least one GPU, else why not (no context is created)."""
    import ctypes

    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return "no NVIDIA driver (libcuda.so.1 not found): no GPU on this machine"
    count = ctypes.c_int(0)
    if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value == 0:
        return "the NVIDIA driver reports no usable GPU"
    return None


@dataclass(frozen=True)
class Backend:
    """One registered backend: its probe and where its runner class lives."""

    name: str
    runner_path: str  # "module:Class", imported only when used
    probe: Callable[[], str | None]
    artefact: str  # "onnx" or "engine"
    takes_precision: bool = False  # the factory picks a precision variant itself (the CPU backend)

    def load_class(self) -> Callable[..., Runner]:
        module, _, cls = self.runner_path.partition(":")
        return getattr(importlib.import_module(module), cls)


BACKENDS: dict[str, Backend] = {
    "trt": Backend("trt", "vggedge.runtime.gpu.trt:TrtRunner", probe_trt, "engine"),
    "ort-cuda": Backend("ort-cuda", "vggedge.runtime.gpu.ort_cuda:OrtCudaRunner", probe_ort_cuda, "onnx"),
    "ort-cpu": Backend("ort-cpu", "vggedge.runtime.cpu:cpu_runner", probe_ort_cpu, "onnx", True),
}
AUTO_ORDER = ("trt", "ort-cuda", "ort-cpu")


def availability() -> dict[str, str | None]:
    """Each backend's reason it cannot run here, or None when it can."""
    return {name: backend.probe() for name, backend in BACKENDS.items()}


@dataclass
class Selection:
    """The chosen backend, its runner (not yet activated) and why the others were skipped."""

    backend: str
    runner: Runner
    skipped: list[tuple[str, str]] = field(default_factory=list)


def select_runner(model: str | Path, backend: str = "auto", *, options: RunnerOptions | None = None,
                  precision: str = "as-given", engine: str | Path | None = None,
                  engine_reason: str | None = None) -> Selection:
    """Pick a runner for an ONNX model (and optionally its engine).

    ``backend`` is "auto" or a registry name. ``options`` (the one set every
    runner takes) and ``precision`` ("as-given", "auto", "fp32", "fp16", "int8")
    are passed to whichever backend is chosen. A forced backend that cannot run
    raises BackendUnavailable with the reason. ``engine_reason`` explains why no
    usable engine exists (e.g. built for another GPU) when ``engine`` is None.
    """
    options = options or RunnerOptions()
    if backend != "auto" and backend not in BACKENDS:
        raise ConfigError(f"backend {backend!r} is unknown; choose auto or one of {sorted(BACKENDS)}")
    order = AUTO_ORDER if backend == "auto" else (backend,)
    skipped: list[tuple[str, str]] = []
    for name in order:
        entry = BACKENDS[name]
        reason = entry.probe()
        if reason is None and entry.artefact == "engine" and engine is None:
            reason = engine_reason or "no TensorRT engine built for this model (run `vggedge build`)"
        if reason is not None:
            if backend != "auto":
                raise BackendUnavailable(f"backend {name!r} cannot run here: {reason}")
            log.info("backend %s skipped: %s", name, reason)
            skipped.append((name, reason))
            continue
        artefact = engine if entry.artefact == "engine" else model
        extra = {"precision": precision} if entry.takes_precision else {}
        runner = entry.load_class()(artefact, options, **extra)
        return Selection(name, runner, skipped)
    raise BackendUnavailable("no backend can run here: " + "; ".join(f"{n}: {r}" for n, r in skipped))
