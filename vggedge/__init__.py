"""vggedge: VGG16 inference for Jetson boards, GPU servers and CPUs.

The flow: weights -> ONNX (+ ModelSpec) -> FP16/INT8 ONNX -> TensorRT engine ->
runner (TensorRT | onnxruntime CUDA | onnxruntime CPU) -> applications.
GPU packages are imported lazily: importing vggedge never touches a GPU.

The public names load on first use (PEP 562), so ``import vggedge`` and the
``vggedge`` command start in a fraction of a second; ONNX, onnxruntime and the
applications are imported only by what uses them. ``preprocess`` and
``read_image`` are the exception: the name ``vggedge.preprocess`` is both the
function and a submodule, and only an eager import keeps it the function.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (BackendUnavailable, CalibrationError, ConfigError, DownloadError, EngineMismatch,
                     ImageError, InputError, ModelError, OutputClosed, OutputError, VggEdgeError, WeightsError)
from .preprocess import preprocess, read_image

if TYPE_CHECKING:  # what the lazy names are, for type checkers and IDEs
    from . import batch
    from .apps.classify import Classified, Classifier
    from .apps.stream import stream
    from .engine.registry import find_engine
    from .model.export import Exported, export_vgg16
    from .model.labels import Prediction, top_k
    from .model.vgg16 import VGG16Options, build_onnx
    from .model.weights import LoadedWeights, load_weights
    from .runtime.base import BatchOutput, Runner, RunnerOptions, TensorMeta
    from .runtime.ort import OrtOptions, OrtRunner
    from .runtime.select import availability, select_runner
    from .spec import ModelSpec, Preprocessing

from .version import __version__  # noqa: E402  (a leaf module: engine sidecars record it)

#: Public name -> the module defining it, imported on first use.
_LAZY = {
    "Classified": ".apps.classify", "Classifier": ".apps.classify", "stream": ".apps.stream",
    "find_engine": ".engine.registry", "Exported": ".model.export", "export_vgg16": ".model.export",
    "Prediction": ".model.labels", "top_k": ".model.labels", "VGG16Options": ".model.vgg16",
    "build_onnx": ".model.vgg16", "LoadedWeights": ".model.weights", "load_weights": ".model.weights",
    "BatchOutput": ".runtime.base", "Runner": ".runtime.base", "RunnerOptions": ".runtime.base",
    "TensorMeta": ".runtime.base", "OrtOptions": ".runtime.ort", "OrtRunner": ".runtime.ort",
    "availability": ".runtime.select", "select_runner": ".runtime.select", "ModelSpec": ".spec",
    "Preprocessing": ".spec",
}
#: Submodules loaded on first use (``vggedge.batch.run(...)``).
_LAZY_MODULES = ("batch",)


def __getattr__(name: str) -> Any:
    """Lazy public names: each loads its module only when first used, then stays cached here."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    elif name in _LAZY_MODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "BackendUnavailable", "BatchOutput", "CalibrationError", "Classified", "Classifier", "ConfigError", "DownloadError", "EngineMismatch",
    "Exported", "ImageError", "InputError", "LoadedWeights", "ModelError", "ModelSpec", "OrtOptions",
    "OrtRunner", "OutputClosed", "OutputError", "Prediction", "Preprocessing", "Runner", "RunnerOptions", "TensorMeta", "VGG16Options", "VggEdgeError",
    "WeightsError", "__version__", "availability", "batch", "build_onnx", "export_vgg16", "find_engine", "load_weights",
    "preprocess", "read_image", "select_runner", "stream", "top_k",
]
