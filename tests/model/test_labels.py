"""Tests for vggedge.model.labels and for the shipped sample photos in calib/."""
from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from vggedge.errors import ConfigError, InputError, ModelError
from vggedge.model import labels as labels_mod
from vggedge.model.labels import Prediction, imagenet_labels, labels_for, top_k

REPO = Path(__file__).resolve().parents[2]
CALIB = REPO / "calib"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def test_imagenet_labels_standard_order() -> None:
    names = imagenet_labels()
    assert len(names) == 1000
    assert names[0] == "tench"
    assert "weasel" in names[356]
    assert names[999] == "toilet tissue"
    assert len(set(names)) == 1000
    assert imagenet_labels() is names  # cached


def test_imagenet_labels_broken_file(monkeypatch: pytest.MonkeyPatch) -> None:
    imagenet_labels.cache_clear()
    monkeypatch.setattr(labels_mod, "_DATA_FILE", "no_such_labels.txt")
    try:
        with pytest.raises(ModelError, match="no_such_labels.txt"):
            imagenet_labels()
    finally:
        imagenet_labels.cache_clear()


def test_imagenet_labels_wrong_count(monkeypatch: pytest.MonkeyPatch) -> None:
    imagenet_labels.cache_clear()
    monkeypatch.setattr(labels_mod, "_DATA_FILE", "LICENSES.md")
    try:
        with pytest.raises(ModelError, match=r"LICENSES\.md has \d+ non-empty lines, expected 1000"):
            imagenet_labels()
    finally:
        imagenet_labels.cache_clear()


def test_labels_for_imagenet() -> None:
    assert labels_for("imagenet", 1000) == imagenet_labels()
    assert labels_for("imagenet", None) == imagenet_labels()
    with pytest.raises(ConfigError, match=r"1000 classes but the model has 10"):
        labels_for("imagenet", 10)


def test_labels_for_generic() -> None:
    assert labels_for(None, 3) == ("class_0", "class_1", "class_2")
    with pytest.raises(ConfigError, match="num_classes"):
        labels_for(None, None)


def test_labels_for_custom_file(tmp_path: Path) -> None:
    path = tmp_path / "pets.txt"
    path.write_text("cat\n\n  dog  \nbird\n", encoding="utf-8")
    assert labels_for(str(path), 3) == ("cat", "dog", "bird")
    with pytest.raises(ConfigError, match=r"pets\.txt has 3 class names but the model has 5"):
        labels_for(str(path), 5)
    with pytest.raises(ConfigError, match=r"missing\.txt does not exist"):
        labels_for(str(tmp_path / "missing.txt"), 3)


def test_top_k_orders_and_breaks_ties_by_index() -> None:
    names = ["a", "b", "c", "d"]
    scores = np.array([[0.1, 0.4, 0.4, 0.1], [0.0, 0.0, 0.0, 1.0]], dtype=np.float32)
    result = top_k(scores, names, 3)
    assert [[p.index for p in row] for row in result] == [[1, 2, 0], [3, 0, 1]]
    assert result[0][0] == Prediction(index=1, label="b", score=pytest.approx(0.4))
    assert all(isinstance(p.score, float) for row in result for p in row)


def test_top_k_one_dim_and_clamp() -> None:
    result = top_k(np.array([3, 1, 2], dtype=np.uint8), ["x", "y", "z"], 10)
    assert len(result) == 1
    assert [(p.label, p.score) for p in result[0]] == [("x", 3.0), ("z", 2.0), ("y", 1.0)]


def test_top_k_errors() -> None:
    with pytest.raises(InputError, match="k >= 1, got k=0"):
        top_k(np.zeros((1, 3)), ["a", "b", "c"], 0)
    with pytest.raises(InputError, match="3 classes but 2 labels"):
        top_k(np.zeros((2, 3)), ["a", "b"], 1)
    with pytest.raises(InputError, match="shape"):
        top_k(np.zeros((1, 2, 3)), ["a", "b", "c"], 1)


def _listed_in_sources() -> set[str]:
    text = (CALIB / "SOURCES.md").read_text(encoding="utf-8")
    return set(re.findall(r"^\|\s*([\w.-]+\.(?:jpe?g|png))\s*\|", text, flags=re.MULTILINE))


def test_calib_photos_decode_and_are_documented() -> None:
    photos = sorted(p for p in CALIB.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    assert len(photos) >= 12
    assert sum(p.stat().st_size for p in CALIB.iterdir()) < 3 * 1024 * 1024
    for photo in photos:
        image = cv2.imread(str(photo), cv2.IMREAD_UNCHANGED)
        assert image is not None, photo
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3, photo
        assert max(image.shape[:2]) <= 640, photo
        assert photo.name == photo.name.lower(), photo
    assert _listed_in_sources() == {p.name for p in photos}
