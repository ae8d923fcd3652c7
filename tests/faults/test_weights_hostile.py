"""Issue 23: .keras and .h5 files of the wrong structure are one-line errors naming the file, never tracebacks."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from faultkit import SMALL, tree, vggedge

ARGS = [a for a in SMALL if not a.startswith("random")][1:]  # SMALL without "--weights random:0"


@pytest.mark.parametrize("config", [[1, 2], None, "VGG16", {"class_name": "Functional", "config": [1]},
                                    {"class_name": "Functional", "config": {"layers": ["conv"]}},
                                    {"class_name": "Functional", "config": {"layers": [{"class_name": "Conv2D",
                                                                                        "config": "x"}]}}])
def test_keras_config_of_the_wrong_shape(tmp_path: Path, config) -> None:
    weights = tmp_path / "m.keras"
    with zipfile.ZipFile(weights, "w") as archive:
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("model.weights.h5", b"")
    size = weights.stat().st_size
    result = vggedge("export", "--weights", weights, *ARGS, "--out", tmp_path / "m.onnx", timeout=120)
    assert result.returncode == 1, result.stderr
    assert f"vggedge: error: {weights}: " in result.stderr and "config" in result.stderr
    assert "Traceback" not in result.stderr
    assert tree(tmp_path) == {"m.keras": size}


def test_h5_with_a_dataset_where_a_layer_group_belongs(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    weights = tmp_path / "w.h5"
    with h5py.File(weights, "w") as handle:
        handle["block1_conv1"] = np.zeros((3, 3, 3, 64), np.float32)  # a dataset, not a group of kernel + bias
    size = weights.stat().st_size
    result = vggedge("export", "--weights", weights, *ARGS, "--out", tmp_path / "m.onnx", timeout=120)
    assert result.returncode == 1, result.stderr
    assert f"vggedge: error: {weights}: " in result.stderr and "Traceback" not in result.stderr
    assert tree(tmp_path) == {"w.h5": size}
