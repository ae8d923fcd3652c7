"""Small structured models shared by several test folders (a module, not conftest: one name, one file).

Every 32x32 VGG16 a test needs comes from the session fixture ``vgg32`` (tests/conftest.py), which exports
each (weights, classes) pair once per session (~135 MB, 2-6 s each on 2 cores). A test folder that writes
variants, engines or caches beside the model takes its own hard-linked copy with :func:`link_model`.
"""
from __future__ import annotations

import json as _json
import os
import shutil
from pathlib import Path

import numpy as _np
import onnx as _onnx
from onnx import TensorProto as _TensorProto, helper as _helper, numpy_helper as _numpy_helper

from vggedge.model.export import export_vgg16
from vggedge.model.vgg16 import VGG16Options
from vggedge.spec import spec_path_for


def options_32(num_classes: int) -> VGG16Options:
    """VGG16 with its top, at 32x32, without rescaling."""
    return VGG16Options(include_rescaling=False, include_top=True, num_classes=num_classes, input_shape=(32, 32, 3))


def normalised_32(folder: Path, num_classes: int, name: str = "vgg16_32.onnx") -> Path:
    """``normalised:0`` weights at 32x32: fast on 2 cores, with clear, stable top-1 answers on the calib photos."""
    return export_vgg16("normalised:0", folder / name, options_32(num_classes)).onnx_path


def link_model(model: Path, folder: Path, name: str | None = None) -> Path:
    """``model`` and its spec sidecar hard-linked (copied where links fail) into ``folder`` as ``name``.

    Writers replace files by renaming (vggedge's atomic writes), so the shared original is never changed; a
    test that rewrites the model file in place must copy it instead.
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (name or model.name)
    try:
        os.link(model, path)
    except OSError:
        shutil.copy(model, path)
    shutil.copy(spec_path_for(model), spec_path_for(path))
    return path


def remove(folder: Path) -> None:
    """Delete a model folder (100-150 MB): do not leave it in pytest's kept temp folders."""
    shutil.rmtree(folder, ignore_errors=True)


# The tiny 4-layer net of the mixed-precision and saturation tests (conv1, conv2, conv3, fc; 32x32 input).

TINY_LAYERS = ["conv1", "conv2", "conv3", "fc"]


def write_tiny_net(path: Path, seed: int = 0) -> Path:
    """Write the tiny net and its spec sidecar at ``path`` (seeded random weights)."""
    rng = _np.random.default_rng(seed)

    def w(name: str, *shape: int, scale: float = 1.0) -> _TensorProto:
        fan_in = int(_np.prod(shape[1:]))
        return _numpy_helper.from_array((rng.normal(0, scale / _np.sqrt(fan_in), shape)).astype(_np.float32), name)

    inits = [w("w1", 8, 3, 3, 3, scale=1.4), w("w2", 8, 8, 3, 3, scale=1.4), w("w3", 8, 8, 3, 3, scale=1.4),
             w("wf", 10, 8 * 16 * 16, scale=3.0),
             _numpy_helper.from_array(_np.zeros(8, _np.float32), "b8"),
             _numpy_helper.from_array(_np.zeros(10, _np.float32), "b10")]
    pads = dict(pads=[1, 1, 1, 1])
    nodes = [_helper.make_node("Conv", ["images", "w1", "b8"], ["c1"], "conv1", **pads),
             _helper.make_node("Relu", ["c1"], ["r1"], "conv1/relu"),
             _helper.make_node("Conv", ["r1", "w2", "b8"], ["c2"], "conv2", **pads),
             _helper.make_node("Relu", ["c2"], ["r2"], "conv2/relu"),
             _helper.make_node("MaxPool", ["r2"], ["p2"], "pool", kernel_shape=[2, 2], strides=[2, 2]),
             _helper.make_node("Conv", ["p2", "w3", "b8"], ["c3"], "conv3", **pads),
             _helper.make_node("Relu", ["c3"], ["r3"], "conv3/relu"),
             _helper.make_node("Flatten", ["r3"], ["f"], "flatten"),
             _helper.make_node("Gemm", ["f", "wf", "b10"], ["logits"], "fc", transB=1),
             _helper.make_node("Softmax", ["logits"], ["predictions"], "softmax", axis=1)]
    graph = _helper.make_graph(nodes, "tiny", [_helper.make_tensor_value_info("images", _TensorProto.FLOAT,
                                                                            ["batch", 3, 32, 32])],
                              [_helper.make_tensor_value_info("predictions", _TensorProto.FLOAT, ["batch", 10])],
                              inits)
    model = _helper.make_model(graph, opset_imports=[_helper.make_opsetid("", 17)])
    _onnx.checker.check_model(model)
    _onnx.save(model, str(path))
    spec = {"channels": 3, "dtype": "float32", "extra": {}, "fixed_batch": None, "height": 32, "width": 32,
            "input_name": "images", "labels": None, "layout": "NCHW", "name": "tiny", "num_classes": 10,
            "output_dtype": "float32", "output_kind": "probabilities", "output_name": "predictions",
            "precision": "fp32", "spec_version": 1, "weights_sha256": None, "weights_source": f"test:{seed}",
            "preprocessing": {"channel_order": "RGB", "interpolation": "linear", "mean": [1.0] * 3,
                              "resize": "direct", "resize_shorter": 256, "scale": 1 / 127.5, "std": [1.0] * 3}}
    spec_path_for(path).write_text(_json.dumps(spec))
    return path
