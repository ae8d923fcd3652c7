"""vggedge: VGG16 inference for Jetson boards, GPU servers and CPUs.

The flow: weights -> ONNX (+ ModelSpec) -> FP16/INT8 ONNX -> TensorRT engine ->
runner (TensorRT | onnxruntime CUDA | onnxruntime CPU) -> applications.
GPU packages are imported lazily: importing vggedge never touches a GPU.
"""
from __future__ import annotations

from .apps.classify import Classified, Classifier
from .engine.registry import find_engine
from .errors import (BackendUnavailable, CalibrationError, ConfigError, DownloadError, EngineMismatch,
                     ImageError, InputError, ModelError, VggEdgeError, WeightsError)
from .model.export import Exported, export_vgg16
from .model.labels import Prediction, top_k
from .model.vgg16 import VGG16Options, build_onnx
from .model.weights import LoadedWeights, load_weights
from .preprocess import preprocess, read_image
from .runtime.base import BatchOutput, Runner, RunnerOptions, TensorMeta
from .runtime.ort import OrtOptions, OrtRunner
from .runtime.select import availability, select_runner
from .spec import ModelSpec, Preprocessing

__version__ = "0.1.0"
#: Submodules loaded on first use (``vggedge.batch.run(...)``) so ``import vggedge`` stays light.
_LAZY_MODULES = ("batch",)


def __getattr__(name: str):
    """Lazy public names: ``vggedge.stream`` and ``vggedge.batch`` load their applications only when used."""
    if name == "stream":
        from .apps.stream import stream

        return stream
    if name in _LAZY_MODULES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BackendUnavailable", "BatchOutput", "CalibrationError", "Classified", "Classifier", "ConfigError", "DownloadError", "EngineMismatch",
    "Exported", "ImageError", "InputError", "LoadedWeights", "ModelError", "ModelSpec", "OrtOptions",
    "OrtRunner", "Prediction", "Preprocessing", "Runner", "RunnerOptions", "TensorMeta", "VGG16Options", "VggEdgeError",
    "WeightsError", "__version__", "availability", "batch", "build_onnx", "export_vgg16", "find_engine", "load_weights",
    "preprocess", "read_image", "select_runner", "stream", "top_k",
]
