"""Data-normalised random weights: a structured stand-in when no pretrained file is at hand.

Plain He-initialised VGG16 maps nearly every photograph to the same class, so
precision comparisons on it mean little. Here each layer, in order, is rescaled
so that its pre-activations over real photographs have zero mean and unit
variance per channel (LSUV-style, as batch-normalised training would leave
them), and the class scores are standardised per class. The result gives
diverse, image-dependent predictions and realistic activation ranges, which is
what FP16/INT8 agreement and benchmarks need. Labels remain meaningless.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from ...errors import WeightsError
from ...spec import CAFFE_RGB, ModelSpec
from ..vgg16 import VGG16_CFG, VGG16Options, conv_layers, random_weights
from .base import LoadedWeights

log = logging.getLogger(__name__)
REPO_CALIB = Path(__file__).resolve().parents[3] / "calib"
LOGIT_SCALE = 4.0  # standardised class scores times this: confident but not saturated softmax


def _op_session(op: str, **attrs):
    """A one-node onnxruntime session (Conv or Gemm) whose weights are inputs."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    node = helper.make_node(op, ["x", "w", "b"], ["y"], **attrs)
    info = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("x", "w", "b")]
    graph = helper.make_graph([node], op, info, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _standardise(weights: dict[str, np.ndarray], layer: str, pre: np.ndarray, gain: float = 1.0) -> np.ndarray:
    """Rescale one layer so ``pre`` becomes zero-mean, unit-variance per channel; returns the new pre-activation."""
    axes = (0, 2, 3) if pre.ndim == 4 else (0,)
    mean, std = pre.mean(axis=axes), pre.std(axis=axes) + 1e-6
    shape = (-1,) + (1,) * (weights[f"{layer}/kernel"].ndim - 1)
    weights[f"{layer}/kernel"] = (weights[f"{layer}/kernel"] * (gain / std).reshape(shape)).astype(np.float32)
    weights[f"{layer}/bias"] = ((weights[f"{layer}/bias"] - mean) * gain / std).astype(np.float32)
    view = (1, -1, 1, 1) if pre.ndim == 4 else (1, -1)
    return ((pre - mean.reshape(view)) * (gain / std).reshape(view)).astype(np.float32)


def normalised_weights(options: VGG16Options, batch: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """Random weights standardised layer by layer on ``batch`` (preprocessed NCHW images).

    Activations are carried forward layer by layer, so this costs one forward pass.
    """
    weights = random_weights(options, seed)
    conv, gemm = _op_session("Conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]), _op_session("Gemm", transB=1)
    x = np.ascontiguousarray(batch, dtype=np.float32) * (1 / 255 if options.include_rescaling else 1)
    names = iter(conv_layers())
    for item in VGG16_CFG:
        if item == "M":
            n, c, h, w = x.shape
            x = np.ascontiguousarray(x[:, :, :h // 2 * 2, :w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5)))
            continue
        layer, _ = next(names)
        pre = conv.run(None, {"x": x, "w": weights[f"{layer}/kernel"], "b": weights[f"{layer}/bias"]})[0]
        x = np.maximum(_standardise(weights, layer, pre), 0.0)
    if options.include_top:
        x = x.reshape(x.shape[0], -1)
        for layer in ("fc1", "fc2", "predictions"):
            pre = gemm.run(None, {"x": x, "w": weights[f"{layer}/kernel"], "b": weights[f"{layer}/bias"]})[0]
            x = np.maximum(_standardise(weights, layer, pre, LOGIT_SCALE if layer == "predictions" else 1.0), 0.0)
    return weights


def load_normalised(options: VGG16Options, seed: int = 0, images: Sequence[str | Path] | None = None) -> LoadedWeights:
    """``normalised:SEED`` weights, standardised on ``images`` (default: the repository's calib/ photos)."""
    from ...preprocess import list_images, preprocess

    paths = list(images) if images else (list_images(REPO_CALIB) if REPO_CALIB.is_dir() else [])
    if not paths:
        raise WeightsError(f"normalised:{seed} weights need photographs to normalise on; none found in {REPO_CALIB}")
    spec = ModelSpec(height=options.input_shape[0], width=options.input_shape[1], preprocessing=CAFFE_RGB)
    batch = preprocess(paths, spec)
    batch = np.concatenate([batch, batch[..., ::-1]])  # mirrored views double the statistics
    log.info("normalising random weights (seed %d) on %d views of %d photographs", seed, len(batch), len(paths))
    return LoadedWeights(normalised_weights(options, np.ascontiguousarray(batch), seed), CAFFE_RGB, f"normalised:{seed}")
