"""Layout conversions from published weight layouts to vggedge's canonical one.

Canonical: conv kernels OIHW, dense kernels (out, in), fc1 inputs in NCHW
flatten order (c, h, w), keys ``"<keras layer>/kernel"`` and ``"<keras layer>/bias"``.
"""
from __future__ import annotations

import numpy as np

from ...errors import WeightsError


def hwio_to_oihw(kernel: np.ndarray) -> np.ndarray:
    """Keras/TensorFlow conv kernel (H, W, I, O) -> (O, I, H, W)."""
    return np.ascontiguousarray(np.transpose(kernel, (3, 2, 0, 1)), dtype=np.float32)


def dense_in_out_to_out_in(kernel: np.ndarray) -> np.ndarray:
    """Keras/TensorFlow dense kernel (in, out) -> (out, in)."""
    return np.ascontiguousarray(kernel.T, dtype=np.float32)


def nhwc_rows_to_nchw_cols(kernel: np.ndarray, feature_hw: tuple[int, int], source: str) -> np.ndarray:
    """The fc6 trap: (h*w*c, out) rows flattened in NHWC order -> (out, c*h*w) in NCHW order."""
    fh, fw = feature_hw
    rows, out = kernel.shape
    if rows != fh * fw * 512:
        raise WeightsError(f"{source}: layer 'fc1' kernel has shape {kernel.shape} in the file's (in, out) layout, "
                           f"expected ({fh * fw * 512}, {out}): 512 x {fh}x{fw} features, which is what "
                           f"input size {fh * 32}x{fw * 32} gives (published ImageNet weights need 224x224x3)")
    channels = 512
    permuted = kernel.reshape(fh, fw, channels, out).transpose(2, 0, 1, 3).reshape(rows, out)
    return dense_in_out_to_out_in(permuted)


def reverse_input_channels(weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Swap RGB<->BGR by reversing block1_conv1's input-channel axis (returns a new dict)."""
    out = dict(weights)
    out["block1_conv1/kernel"] = np.ascontiguousarray(weights["block1_conv1/kernel"][:, ::-1])
    return out
