"""Bad .npz weight files: the message names the real cause, in the file's own layout."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from faultkit import SMALL, tree, vggedge

ARGS = [a for a in SMALL if not a.startswith("random")][1:]  # SMALL without "--weights random:0"


def test_random_bytes_named_npz_is_not_a_valid_npz_archive(tmp_path: Path) -> None:
    weights = tmp_path / "vgg16_weights.npz"
    weights.write_bytes(np.random.default_rng(0).bytes(4096))
    result = vggedge("export", "--weights", weights, *ARGS, "--out", tmp_path / "m.onnx")
    assert result.returncode == 1
    assert f"vggedge: error: {weights}: not a valid npz archive" in result.stderr
    assert "pickle" not in result.stderr and "Traceback" not in result.stderr
    assert tree(tmp_path) == {"vgg16_weights.npz": 4096}


def test_wrong_kernel_shape_is_shown_in_hwio(tmp_path: Path) -> None:
    weights = tmp_path / "w.npz"
    np.savez(weights, conv1_1_W=np.zeros((3, 3, 3, 32), np.float32), conv1_1_b=np.zeros(32, np.float32))
    result = vggedge("export", "--weights", weights, *ARGS, "--out", tmp_path / "m.onnx")
    assert result.returncode == 1
    assert (f"vggedge: error: {weights}: layer 'block1_conv1' kernel has shape (3, 3, 3, 32) in the file's HWIO "
            "layout, expected (3, 3, 3, 64)") in result.stderr
    assert not (tmp_path / "m.onnx").exists()
