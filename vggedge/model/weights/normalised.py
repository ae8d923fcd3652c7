"""Data-normalised random weights: a structured stand-in when no pretrained file is at hand.

Plain He-initialised VGG16 maps nearly every photograph to the same class, so
precision comparisons on it mean little. Here each conv and hidden dense layer,
in order, is rescaled so its pre-activations over real photographs have unit
variance per channel (LSUV-style), and the classifier is fitted by ridge
regression (a linear probe) so each photograph gets its own class by a clear
margin, as a trained head gives. Predictions are then diverse and stable, with
realistic activation ranges: what FP16/INT8 agreement and benchmarks need.

By default it is fitted on all the repository's photographs, ``calib/`` and
``eval/``: the stand-in's "training data". A linear probe on a dozen photos does
not generalise, so on photos outside its fit it answers near-ties (logit margins
a tenth of those on its own photos), where any perturbation flips the answer; a
trained model separates the photos of its domain by wide margins. Fitting on
``eval/`` keeps those photos in the stand-in's domain while INT8 *calibration*
still sees only ``calib/``: evaluation stays disjoint from calibration.
Measured without the head fit, full per-channel centering made the network
chaotic (1% input noise flipped a third of the top-1 classes). Labels remain
meaningless.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from ...errors import WeightsError
from ...paths import CALIB_DIR, EVAL_DIR
from ...spec import CAFFE_RGB, ModelSpec
from ..vgg16 import VGG16_CFG, VGG16Options, conv_layers, random_weights
from .base import LoadedWeights

log = logging.getLogger(__name__)
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


def _standardise(weights: dict[str, np.ndarray], layer: str, pre: np.ndarray, gain: float = 1.0,
                 centering: float = 1.0) -> np.ndarray:
    """Rescale one layer to unit variance per channel, removing ``centering`` of its mean; returns the new pre-activation."""
    axes = (0, 2, 3) if pre.ndim == 4 else (0,)
    mean, std = centering * pre.mean(axis=axes), pre.std(axis=axes) + 1e-6
    shape = (-1,) + (1,) * (weights[f"{layer}/kernel"].ndim - 1)
    weights[f"{layer}/kernel"] = (weights[f"{layer}/kernel"] * (gain / std).reshape(shape)).astype(np.float32)
    weights[f"{layer}/bias"] = ((weights[f"{layer}/bias"] - mean) * gain / std).astype(np.float32)
    view = (1, -1, 1, 1) if pre.ndim == 4 else (1, -1)
    return ((pre - mean.reshape(view)) * (gain / std).reshape(view)).astype(np.float32)


def fit_head(features: np.ndarray, groups: np.ndarray, classes: int, seed: int, ridge: float = 1e-2) -> np.ndarray:
    """Ridge-regression classifier (classes, features): each group of views gets its own random class.

    Solved in the dual (views x views), so it costs nothing next to the forward pass.
    """
    rng = np.random.default_rng(seed + 1)
    count = int(groups.max()) + 1  # more groups than classes: classes are shared, each group still has one
    labels = rng.permutation(np.resize(rng.permutation(classes), count)) if count > classes else \
        rng.choice(classes, size=count, replace=False)
    targets = np.full((len(groups), classes), -1.0 / classes)
    targets[np.arange(len(groups)), labels[groups]] += 1.0
    gram = features @ features.T
    alpha = np.linalg.solve(gram + ridge * np.trace(gram) / len(gram) * np.eye(len(gram)), targets)
    return (alpha.T @ features).astype(np.float32)


def normalised_weights(options: VGG16Options, batch: np.ndarray, seed: int = 0, centering: float = 0.0,
                       groups: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Random weights standardised layer by layer on ``batch`` (preprocessed NCHW images).

    Activations are carried forward layer by layer, so this costs one forward pass.
    With a top, the ``predictions`` layer is fitted by ridge regression so each
    group of views in ``batch`` (default: each image) has its own class by a clear margin.
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
        x = np.maximum(_standardise(weights, layer, pre, centering=centering), 0.0)
    if options.include_top:
        x = x.reshape(x.shape[0], -1)
        for layer in ("fc1", "fc2"):
            pre = gemm.run(None, {"x": x, "w": weights[f"{layer}/kernel"], "b": weights[f"{layer}/bias"]})[0]
            x = np.maximum(_standardise(weights, layer, pre, centering=centering), 0.0)
        groups = np.arange(len(x)) if groups is None else np.asarray(groups)
        head = fit_head(x.astype(np.float64), groups, int(options.num_classes), seed)
        weights["predictions/kernel"] = LOGIT_SCALE * head
        weights["predictions/bias"] = np.zeros(int(options.num_classes), np.float32)
    return weights


def load_normalised(options: VGG16Options, seed: int = 0, images: Sequence[str | Path] | None = None) -> LoadedWeights:
    """``normalised:SEED`` weights, standardised on ``images`` (default: the repository's calib/ and eval/ photos)."""
    paths = list(images) if images else repository_photos()
    if not paths:
        raise WeightsError(f"normalised:{seed} weights need photographs to normalise on; none found in "
                           f"{CALIB_DIR} or {EVAL_DIR}")
    from ...preprocess import preprocess

    spec = ModelSpec(height=options.input_shape[0], width=options.input_shape[1], preprocessing=CAFFE_RGB)
    batch = preprocess(paths, spec)
    batch = np.concatenate([batch, batch[..., ::-1]])  # mirrored views double the statistics
    groups = np.tile(np.arange(len(paths)), 2)
    log.info("normalising random weights (seed %d) on %d views of %d photographs", seed, len(batch), len(paths))
    arrays = normalised_weights(options, np.ascontiguousarray(batch), seed, groups=groups)
    return LoadedWeights(arrays, CAFFE_RGB, f"normalised:{seed}", sha256=photos_fingerprint(paths))


def repository_photos() -> list[Path]:
    """The photographs the stand-in is fitted on: ``calib/`` then ``eval/`` (sorted within each)."""
    from ...preprocess import list_images

    return [p for folder in (CALIB_DIR, EVAL_DIR) if folder.is_dir() for p in list_images(folder)]


def photos_fingerprint(paths: Sequence[str | Path]) -> str:
    """``photos:<sha256>`` of the photos' names and bytes: which stand-in an export holds (its spec's weights_sha256)."""
    import hashlib

    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).name.encode() + b"\0" + Path(path).read_bytes())
    return "photos:" + digest.hexdigest()
