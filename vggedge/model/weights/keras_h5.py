"""Keras ``.h5`` weights (``vgg16_weights_tf_dim_ordering_tf_kernels.h5`` and friends).

Layers ``block1_conv1`` ... ``block5_conv3`` (HWIO), ``fc1`` (rows in (h, w, c)
order), ``fc2``, ``predictions`` (in, out). Input: BGR 0-255 minus the Caffe mean.
Reads the Keras 2 layout (per-layer groups listing ``weight_names``), full-model
files (``model_weights`` group) and the Keras 3 ``.weights.h5`` layout (``layers/<name>/vars/0``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import WeightsError
from ...spec import CAFFE_BGR
from ..vgg16 import VGG16Options, conv_layers
from .base import LoadedWeights
from .convert import dense_in_out_to_out_in, hwio_to_oihw, nhwc_rows_to_nchw_cols


def load_h5(path: str | Path, options: VGG16Options) -> LoadedWeights:
    """Read a Keras VGG16 .h5 file and convert it to canonical layout."""
    try:
        import h5py
    except ImportError:
        raise WeightsError(f"{path}: reading Keras .h5 files needs h5py (pip install h5py)") from None
    path = Path(path)
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise WeightsError(f"{path}: not a readable HDF5 file ({exc})") from None
    with handle:
        root = handle["model_weights"] if "model_weights" in handle else handle
        layers = [name for name, _ in conv_layers()]
        if options.include_top:
            layers += ["fc1", "fc2", "predictions"]
        arrays: dict[str, np.ndarray] = {}
        for layer in layers:
            kernel, bias = _layer_arrays(root, layer, path)
            if layer.startswith("block"):
                if kernel.ndim != 4:
                    raise WeightsError(f"{path}: layer {layer!r} kernel has shape {kernel.shape}, expected HWIO (3, 3, in, out)")
                arrays[f"{layer}/kernel"] = hwio_to_oihw(kernel)
            elif layer == "fc1":
                arrays[f"{layer}/kernel"] = nhwc_rows_to_nchw_cols(kernel, options.feature_hw, f"{path}")
            else:
                arrays[f"{layer}/kernel"] = dense_in_out_to_out_in(kernel)
            arrays[f"{layer}/bias"] = bias.astype(np.float32)
    return LoadedWeights(arrays, CAFFE_BGR, "keras", str(path))


def _layer_arrays(root, layer: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(kernel, bias) of one layer in whichever Keras layout the file uses."""
    if "layers" in root and layer in root["layers"]:  # Keras 3 .weights.h5
        group = root["layers"][layer]["vars"]
        names = sorted(group.keys(), key=int)
        found = [group[n][()] for n in names]
    elif layer in root:
        group = root[layer]
        names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs.get("weight_names", [])]
        found = [group[n][()] for n in names] if names else _datasets(group)
    else:
        available = sorted(root["layers"].keys() if "layers" in root else root.keys())
        raise WeightsError(f"{path}: missing layer {layer!r}; the file has layers {available}")
    kernels = [a for a in found if a.ndim >= 2]
    biases = [a for a in found if a.ndim == 1]
    if len(kernels) != 1 or len(biases) != 1:
        shapes = [a.shape for a in found]
        raise WeightsError(f"{path}: layer {layer!r} holds arrays of shapes {shapes}; expected one kernel and one bias")
    return kernels[0], biases[0]


def _datasets(group) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    group.visititems(lambda _name, obj: out.append(obj[()]) if hasattr(obj, "shape") else None)
    return out
