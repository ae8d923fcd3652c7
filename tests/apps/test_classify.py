"""Tests for vggedge.apps.classify.Classifier on a small (32x32) randomly initialised VGG16."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from vggedge.errors import ImageError, ModelError
from vggedge.apps.classify import Classifier
from vggedge.model.export import export_vgg16
from vggedge.model.labels import imagenet_labels
from vggedge.model.vgg16 import VGG16Options

REPO = Path(__file__).resolve().parents[2]
PHOTOS = sorted((REPO / "calib").glob("*.jpg"))[:3]
OPTS = VGG16Options(include_rescaling=False, include_top=True, num_classes=1000, input_shape=(32, 32, 3))


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("classify") / "vgg16_32.onnx"
    export_vgg16("random:3", path, OPTS)
    yield path
    path.unlink()  # 150 MB: do not leave it in pytest's kept temp folders


def test_classify_top3_sorted_imagenet(model_path: Path) -> None:
    assert len(PHOTOS) == 3
    with Classifier(model_path, batch_size=2) as clf:
        assert clf.selection.backend in ("trt", "ort-cuda", "ort-cpu")
        results = clf.classify(PHOTOS, k=3)
    names = imagenet_labels()
    assert len(results) == 3
    for preds in results:
        assert len(preds) == 3
        scores = [p.score for p in preds]
        assert scores == sorted(scores, reverse=True)
        assert all(0.0 <= s <= 1.0 for s in scores)  # softmax probabilities
        assert len({p.index for p in preds}) == 3
        assert all(p.label == names[p.index] for p in preds)
    assert clf.timings.images == [2, 1]  # two batches of at most 2
    assert len(clf.timings.preprocess) == len(clf.timings.infer) == 2


def test_classify_batching_does_not_change_results(model_path: Path) -> None:
    with Classifier(model_path, batch_size=8) as clf:
        together = clf.classify(PHOTOS, k=3)
        alone = [clf.classify([photo], k=3)[0] for photo in PHOTOS]
        scores = clf.scores(np.zeros((2, 3, 32, 32), np.float32))
    assert [[p.index for p in row] for row in together] == [[p.index for p in row] for row in alone]
    for row_a, row_b in zip(together, alone):
        np.testing.assert_allclose([p.score for p in row_a], [p.score for p in row_b], rtol=1e-4, atol=1e-6)
    assert scores.shape == (2, 1000) and scores.dtype == np.float32
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-4)


def test_classify_bad_image_names_file(model_path: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"no")
    with Classifier(model_path) as clf, pytest.raises(ImageError, match="broken.jpg"):
        clf.classify([PHOTOS[0], broken])


def test_features_model_rejected(tmp_path: Path) -> None:
    opts = VGG16Options(include_rescaling=False, include_top=False, pooling="avg", input_shape=(32, 32, 3))
    path = tmp_path / "features.onnx"
    export_vgg16("random", path, opts)
    with pytest.raises(ModelError, match=r"features\.onnx: this model outputs features \(avg_pool\), "
                                         r"not class scores"):
        Classifier(path)


def test_missing_sidecar(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"no spec sidecar .*`vggedge export`"):
        Classifier(tmp_path / "nothing.onnx")


def test_classifier_refuses_other_threads(model_path):
    """One Classifier per thread: a second thread gets a clear error, not a CUDA context crash."""
    import threading

    errors = []
    with Classifier(model_path) as clf:
        thread = threading.Thread(target=lambda: errors.append(_try(lambda: clf.classify([PHOTOS[0]]))))
        thread.start()
        thread.join()
        assert len(clf.classify([PHOTOS[0]], k=1)) == 1  # the owner still works
    assert errors and "one Classifier per thread" in str(errors[0])


def _try(fn):
    try:
        fn()
    except Exception as exc:  # returned for the assertion in the main thread
        return exc
    return None
