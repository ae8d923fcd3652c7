"""prepare_model reuses an export only when it came from the same weights (the same photos for the stand-in)."""
from __future__ import annotations

from pathlib import Path

import pytest

from vggedge.model import prepare
from vggedge.model.weights import file_sha256, weights_identity
from vggedge.model.weights.normalised import photos_fingerprint, repository_photos
from vggedge.spec import ModelSpec, spec_path_for


def test_weights_identity_per_source(tmp_path: Path) -> None:
    weights = tmp_path / "w.npz"
    weights.write_bytes(b"weights")
    assert weights_identity("normalised:3") == photos_fingerprint(repository_photos())
    assert weights_identity("random:1") is None
    assert weights_identity(weights) == file_sha256(weights)


@pytest.mark.parametrize("recorded,reused", [("same", True), ("other", False)])
def test_stand_in_reused_only_from_the_same_photos(tmp_path: Path, monkeypatch, recorded: str, reused: bool) -> None:
    exports = []
    monkeypatch.setattr(prepare, "export_vgg16", lambda *a, **k: exports.append(a))
    (tmp_path / "vgg16.onnx").write_bytes(b"model")
    sha = photos_fingerprint(repository_photos()) if recorded == "same" else "photos:" + "0" * 64
    ModelSpec(weights_source="normalised:0", weights_sha256=sha).save(spec_path_for(tmp_path / "vgg16.onnx"))
    assert prepare.prepare_model("normalised:0", tmp_path) == (tmp_path / "vgg16.onnx", True)
    assert (exports == []) is reused


def test_a_weight_file_is_known_by_its_bytes(tmp_path: Path, monkeypatch) -> None:
    exports = []
    monkeypatch.setattr(prepare, "export_vgg16", lambda *a, **k: exports.append(a))
    monkeypatch.setattr(prepare, "export_options", lambda source: None)
    weights = tmp_path / "w.npz"
    weights.write_bytes(b"weights")
    (tmp_path / "vgg16.onnx").write_bytes(b"model")
    ModelSpec(weights_source="npz", weights_sha256=file_sha256(weights)).save(spec_path_for(tmp_path / "vgg16.onnx"))
    assert prepare.prepare_model(weights, tmp_path) == (tmp_path / "vgg16.onnx", False) and exports == []
    weights.write_bytes(b"other weights")
    prepare.prepare_model(weights, tmp_path)
    assert len(exports) == 1
