"""Keras ``.h5`` weights: the published Keras 2 ImageNet file and Keras 3 ``.weights.h5``.

Layers ``block1_conv1`` ... ``block5_conv3`` (HWIO), ``fc1`` (rows in (h, w, c)
order), ``fc2``, ``predictions`` (in, out).

- Keras 2 layout (per-layer groups listing ``weight_names``, or a full-model file
  with a ``model_weights`` group), as in ``vgg16_weights_tf_dim_ordering_tf_kernels.h5``:
  these expect BGR 0-255 minus the Caffe mean, as keras.applications does.
- Keras 3 ``.weights.h5`` (``layers/<key>/vars/0, 1``): Keras 3 names the groups
  after the layer class (``conv2d``, ``conv2d_1`` ... ``conv2d_12``, ``dense``,
  ``dense_1``, ``dense_2``) in the model's layer order, so layers are read by that
  order and every shape is checked. What input such weights expect cannot be
  read from the file: the loaded preprocessing is None, and the user states it.
"""
from __future__ import annotations

import contextlib

import re
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ...errors import WeightsError
from ...spec import CAFFE_BGR
from ..vgg16 import FC_UNITS, VGG16Options, conv_layers
from .base import LoadedWeights
from .convert import dense_in_out_to_out_in, hwio_to_oihw, nhwc_rows_to_nchw_cols

DENSE_LAYERS = ("fc1", "fc2", "predictions")


def open_h5(path: str | Path):
    """``h5py.File(path, "r")`` with errors naming the file."""
    try:
        import h5py
    except ImportError:
        raise WeightsError(f"{path}: reading Keras .h5 files needs h5py (pip install h5py)") from None
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise WeightsError(f"{path}: not a readable HDF5 file ({exc})") from None


def load_h5(path: str | Path, options: VGG16Options) -> LoadedWeights:
    """Read a Keras 2 or Keras 3 VGG16 .h5 file and convert it to canonical layout."""
    path = Path(path)
    with open_h5(path) as handle, malformed(path):
        if "layers" in handle and "model_weights" not in handle:
            return LoadedWeights(read_keras3(handle["layers"], path, options), None, "keras3", str(path))
        root = handle["model_weights"] if "model_weights" in handle else handle
        found = {layer: _keras2_arrays(root, layer, path) for layer in layer_names(options)}
    return LoadedWeights(canonical_arrays(found, options, path), CAFFE_BGR, "keras", str(path))


@contextlib.contextmanager
def malformed(path: Path) -> Iterator[None]:
    """Turn what a file of the wrong structure makes h5py raise (a dataset where a group should be, a missing
    or odd member) into one WeightsError naming the file."""
    try:
        yield
    except (AttributeError, TypeError, KeyError, ValueError, IndexError) as exc:
        raise WeightsError(f"{path}: not the layout of a Keras VGG16 weights file ({type(exc).__name__}: "
                           f"{str(exc)[:160]}); expected layer groups holding kernel and bias datasets") from None


def layer_names(options: VGG16Options) -> list[str]:
    """The Keras names of the layers holding weights: 13 convolutions, then 3 dense with the top."""
    return [name for name, _ in conv_layers()] + (list(DENSE_LAYERS) if options.include_top else [])


def read_keras3(layers, path: Path, options: VGG16Options, keys: Sequence[str] | None = None) -> dict:
    """Canonical arrays from a Keras 3 ``layers`` group.

    ``keys`` (from a ``.keras`` archive's config) lists the group names in the
    model's layer order; without it, groups named after the Keras layers are used
    when present, else the class-named groups in numeric order.
    """
    wanted = layer_names(options)
    if keys is None:
        keys = wanted if all(n in layers for n in wanted) else _by_order(layers, path, options)
    if len(keys) < len(wanted):
        raise WeightsError(f"{path}: the model holds {len(keys)} weighted layers, expected {len(wanted)} "
                           f"({wanted[len(keys)]!r} and on are missing); a model without its top needs "
                           "include_top=False (--no-include-top)")
    found = {}
    for index, (layer, key) in enumerate(zip(wanted, keys)):
        if key not in layers or "vars" not in layers[key]:
            raise WeightsError(f"{path}: no weights group 'layers/{key}' for layer {layer!r}; "
                               f"the file has {sorted(layers.keys())}")
        group = layers[key]["vars"]
        arrays = [group[n][()] for n in sorted(group.keys(), key=int)]
        where = f"layer {index + 1} of {len(wanted)} ('layers/{key}', read as {layer!r})"
        found[layer] = _kernel_bias(arrays, path, where)
    return canonical_arrays(found, options, path, keys=dict(zip(wanted, keys)))


def _by_order(layers, path: Path, options: VGG16Options) -> list[str]:
    """Keras 3's class-named groups (``conv2d``, ``conv2d_1``, ...) in the model's layer order."""
    convs, dense = _numbered(layers, "conv2d"), _numbered(layers, "dense")
    if len(convs) != 13:
        raise WeightsError(f"{path}: found {len(convs)} convolution weight groups {convs}, expected 13 "
                           "(Keras 3 saves VGG16's block1_conv1 ... block5_conv3 as conv2d, conv2d_1 ... "
                           f"conv2d_12); the file has {sorted(layers.keys())}")
    if not options.include_top:
        return convs
    if len(dense) != 3:
        raise WeightsError(f"{path}: found {len(dense)} dense weight groups {dense}, expected 3 (fc1, fc2, "
                           "predictions, saved by Keras 3 as dense, dense_1, dense_2) with include_top=True; "
                           "export a model without its top with include_top=False (--no-include-top)")
    return convs + dense


def _numbered(layers, stem: str) -> list[str]:
    """Group names ``stem``, ``stem_1``, ``stem_2`` ... that hold variables, in numeric order."""
    pattern = re.compile(rf"^{stem}(?:_(\d+))?$")
    hits = [(int(m.group(1) or 0), name) for name in layers.keys() if (m := pattern.match(name))
            and "vars" in layers[name] and len(layers[name]["vars"]) > 0]
    return [name for _, name in sorted(hits)]


def canonical_arrays(found: dict[str, tuple[np.ndarray, np.ndarray]], options: VGG16Options, path: Path,
                     keys: dict[str, str] | None = None) -> dict[str, np.ndarray]:
    """Check each layer's file-layout shape (naming its position and group) and convert to canonical."""
    arrays: dict[str, np.ndarray] = {}
    cin = options.input_shape[2]
    fh, fw = options.feature_hw
    classes = int(options.num_classes) if options.include_top else 0
    expected = {name: (3, 3, 0, cout) for name, cout in conv_layers()}
    expected.update(fc1=(fh * fw * 512, FC_UNITS), fc2=(FC_UNITS, FC_UNITS), predictions=(FC_UNITS, classes))
    for index, (layer, (kernel, bias)) in enumerate(found.items()):
        want = expected[layer]
        if len(want) == 4:
            want = (3, 3, cin, want[3])
            cin = want[3]
        where = f"layer {index + 1} of {len(found)} ({layer!r}" + (f", group 'layers/{keys[layer]}')" if keys else ")")
        if kernel.shape != want or bias.shape != (want[-1],):
            hint = (f" (fc1's inputs are 512 x {fh}x{fw} for input_shape={options.input_shape})" if layer == "fc1"
                    else f" (num_classes={options.num_classes})" if layer == "predictions" else "")
            raise WeightsError(f"{path}: {where} has kernel {kernel.shape} and bias {bias.shape}, expected kernel "
                               f"{want} and bias {(want[-1],)} in Keras's layout{hint}")
        if layer == "fc1":
            arrays["fc1/kernel"] = nhwc_rows_to_nchw_cols(kernel, options.feature_hw, str(path))
        elif kernel.ndim == 4:
            arrays[f"{layer}/kernel"] = hwio_to_oihw(kernel)
        else:
            arrays[f"{layer}/kernel"] = dense_in_out_to_out_in(kernel)
        arrays[f"{layer}/bias"] = bias.astype(np.float32)
    return arrays


def _keras2_arrays(root, layer: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(kernel, bias) of one layer in the Keras 2 layout."""
    if layer not in root:
        raise WeightsError(f"{path}: missing layer {layer!r}; the file has layers {sorted(root.keys())}")
    group = root[layer]
    names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs.get("weight_names", [])]
    found = [group[n][()] for n in names] if names else _datasets(group)
    return _kernel_bias(found, path, f"layer {layer!r}")


def _kernel_bias(found: list[np.ndarray], path: Path, where: str) -> tuple[np.ndarray, np.ndarray]:
    kernels = [a for a in found if a.ndim >= 2]
    biases = [a for a in found if a.ndim == 1]
    if len(kernels) != 1 or len(biases) != 1:
        shapes = [a.shape for a in found]
        raise WeightsError(f"{path}: {where} holds arrays of shapes {shapes}; expected one kernel and one bias")
    return kernels[0], biases[0]


def _datasets(group) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    group.visititems(lambda _name, obj: out.append(obj[()]) if hasattr(obj, "shape") else None)
    return out
