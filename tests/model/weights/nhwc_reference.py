"""An independent VGG16 forward pass in NHWC numpy (float64), written from the
file formats' own layouts, not from vggedge's graph builder or converters."""
from __future__ import annotations

import numpy as np

CONV_PLAN = [(1, 2), (2, 2), (3, 3), (4, 3), (5, 3)]  # (block, convs); each block ends with a 2x2 max-pool


def conv3x3_same(x: np.ndarray, kernel_hwio: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """NHWC 3x3 convolution, stride 1, zero padding 1 (cross-correlation, as in TF and Caffe)."""
    n, h, w, c = x.shape
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    patches = np.stack([padded[:, i:i + h, j:j + w, :] for i in range(3) for j in range(3)], axis=3)
    return patches.reshape(n, h, w, 9 * c) @ kernel_hwio.reshape(9 * c, -1) + bias


def maxpool2(x: np.ndarray) -> np.ndarray:
    n, h, w, c = x.shape
    x = x[:, : h // 2 * 2, : w // 2 * 2, :]
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def forward_hwio(x_nhwc: np.ndarray, convs: list[tuple[np.ndarray, np.ndarray]],
                 dense: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """convs: 13 (HWIO kernel, bias); dense: 3 ((in, out) kernel with NHWC-flattened fc1 rows, bias).
    Returns logits (no softmax)."""
    x = x_nhwc.astype(np.float64)
    layer = 0
    for _, count in CONV_PLAN:
        for _ in range(count):
            kernel, bias = convs[layer]
            x = np.maximum(conv3x3_same(x, kernel.astype(np.float64), bias.astype(np.float64)), 0.0)
            layer += 1
        x = maxpool2(x)
    x = x.reshape(x.shape[0], -1)  # NHWC flatten, as Keras and the TF port do
    for i, (kernel, bias) in enumerate(dense):
        x = x @ kernel.astype(np.float64) + bias.astype(np.float64)
        if i < 2:
            x = np.maximum(x, 0.0)
    return x


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.linalg.norm(got.astype(np.float64) - want) / np.linalg.norm(want))
