"""The classic ``vgg16_weights.npz`` (TensorFlow port of the Caffe weights, 2016).

Keys ``conv1_1_W`` (HWIO) ... ``conv5_3_b``, ``fc6_W`` (25088, 4096) with rows in
(h, w, c) order, ``fc7_W``, ``fc8_W`` (in, out). Input: RGB 0-255 minus the Caffe mean.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ...errors import WeightsError
from ...spec import CAFFE_RGB
from ..vgg16 import VGG16Options, conv_layers, expected_shapes
from .base import LoadedWeights
from .convert import dense_in_out_to_out_in, hwio_to_oihw, nhwc_rows_to_nchw_cols

FC_KEYS = {"fc1": "fc6", "fc2": "fc7", "predictions": "fc8"}


def npz_key(layer: str) -> str:
    """Keras layer name -> npz key prefix (``block2_conv1`` -> ``conv2_1``, ``fc1`` -> ``fc6``)."""
    if layer in FC_KEYS:
        return FC_KEYS[layer]
    block, conv = layer.removeprefix("block").split("_conv")
    return f"conv{block}_{conv}"


def load_npz(path: str | Path, options: VGG16Options) -> LoadedWeights:
    """Read the npz with pickles disabled and convert it to canonical layout."""
    path = Path(path)
    try:
        if not zipfile.is_zipfile(path):
            raise WeightsError(f"{path}: not a valid npz archive (an .npz is a zip file of .npy arrays; this file "
                               f"is {path.stat().st_size} bytes of something else). Download it again with "
                               "`vggedge weights download npz`")
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise WeightsError(f"{path}: not a valid npz archive ({type(exc).__name__}: "
                           f"{getattr(exc, 'strerror', None) or 'unreadable zip of .npy arrays'})") from None
    expected = expected_shapes(options)
    with archive:
        def get(key: str) -> np.ndarray:
            if key not in archive.files:
                raise WeightsError(f"{path}: missing array {key!r}; the file has {sorted(archive.files)[:8]}...")
            try:
                return archive[key]
            except ValueError as exc:  # object arrays need pickles, which stay disabled
                raise WeightsError(f"{path}: array {key!r} cannot be read without pickles ({exc})") from None

        arrays: dict[str, np.ndarray] = {}
        for layer, _ in conv_layers():
            arrays[f"{layer}/kernel"] = _conv(get(f"{npz_key(layer)}_W"), path, layer, expected[f"{layer}/kernel"])
            arrays[f"{layer}/bias"] = get(f"{npz_key(layer)}_b").astype(np.float32)
        if options.include_top:
            fc1 = _dense(get("fc6_W"), path, "fc1")
            arrays["fc1/kernel"] = nhwc_rows_to_nchw_cols(fc1, options.feature_hw, str(path))
            for layer in ("fc2", "predictions"):
                kernel = _dense(get(f"{FC_KEYS[layer]}_W"), path, layer, expected[f"{layer}/kernel"])
                arrays[f"{layer}/kernel"] = dense_in_out_to_out_in(kernel)
            for layer, key in FC_KEYS.items():
                arrays[f"{layer}/bias"] = get(f"{key}_b").astype(np.float32)
    return LoadedWeights(arrays, CAFFE_RGB, "npz", str(path))


def _conv(kernel: np.ndarray, path: Path, layer: str, oihw: tuple[int, ...]) -> np.ndarray:
    """Check a conv kernel in the file's own HWIO layout (expected and found), then convert it."""
    o, i, h, w = oihw
    if kernel.shape != (h, w, i, o):
        raise WeightsError(f"{path}: layer {layer!r} kernel has shape {tuple(kernel.shape)} in the file's HWIO "
                           f"layout, expected {(h, w, i, o)} (height, width, in channels, out channels)")
    return hwio_to_oihw(kernel)


def _dense(kernel: np.ndarray, path: Path, layer: str, out_in: tuple[int, ...] | None = None) -> np.ndarray:
    """Check a dense kernel in the file's own (in, out) layout (fc1's rows are checked when permuted)."""
    if kernel.ndim != 2:
        raise WeightsError(f"{path}: layer {layer!r} kernel has shape {kernel.shape}, expected 2-D (in, out)")
    fout, fin = out_in or kernel.shape[::-1]
    if kernel.shape != (fin, fout):
        raise WeightsError(f"{path}: layer {layer!r} kernel has shape {tuple(kernel.shape)} in the file's "
                           f"(in, out) layout, expected {(fin, fout)}")
    return kernel
