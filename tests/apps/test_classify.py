"""Tests for vggedge.apps.classify.Classifier on a small (32x32) randomly initialised VGG16."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from small_models import link_model, remove

from vggedge.errors import ConfigError, ImageError, ModelError
from vggedge.apps.classify import Classifier
from vggedge.model.export import export_vgg16
from vggedge.model.labels import imagenet_labels
from vggedge.model.vgg16 import VGG16Options

REPO = Path(__file__).resolve().parents[2]
PHOTOS = sorted((REPO / "calib").glob("*.jpg"))[:3]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory, vgg32) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("classify")
    yield link_model(vgg32("random:3", 1000), folder, "vgg16_32.onnx")
    remove(folder)  # do not leave models in pytest's kept temp folders


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


def test_classify_iter_reports_every_bad_file_in_place(model_path: Path, tmp_path: Path) -> None:
    empty, text = tmp_path / "empty.jpg", tmp_path / "text.png"
    empty.write_bytes(b"")
    text.write_text("not an image")
    sources = [PHOTOS[0], PHOTOS[1], empty, text, tmp_path / "missing.jpg", PHOTOS[2]]
    with Classifier(model_path, batch_size=2) as clf:
        results = list(clf.classify_iter(sources, k=2))
        strict = clf.classify([PHOTOS[0], PHOTOS[1], PHOTOS[2]], k=2)
    assert [r.index for r in results] == list(range(6)) and [r.source for r in results] == sources
    assert [r.ok for r in results] == [True, True, False, False, False, True]
    assert "empty.jpg: image file is empty" in str(results[2].error)
    assert "text.png: not a decodable image" in str(results[3].error)
    assert "missing.jpg: cannot read image file" in str(results[4].error)
    good = [r.predictions for r in results if r.ok]
    assert [[p.index for p in row] for row in good] == [[p.index for p in row] for row in strict]
    assert clf.timings.images[:3] == [2, 0, 1]  # the all-bad middle batch still flowed, in order


def test_classify_iter_strict_stops_at_first_bad_file(model_path: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"xx")
    seen = []
    with Classifier(model_path, batch_size=1) as clf, pytest.raises(ImageError, match="bad.jpg"):
        for result in clf.classify_iter([PHOTOS[0], bad, PHOTOS[1]], strict=True):
            seen.append(result.source)
    assert seen == [PHOTOS[0]]


def test_classify_goes_through_run_with_own_prepare(model_path: Path) -> None:
    """A caller's prepare function replaces decoding (as stream and batch do); results still come in order."""
    from vggedge.apps.batches import ImageBatch

    def prepare(batch: ImageBatch, inputs: dict) -> int:
        for row, value in enumerate(batch.sources):
            inputs["images"][row] = value
            batch.rows.append(row)
        return len(batch.sources)

    with Classifier(model_path, batch_size=2) as clf:
        got = list(clf.classify_iter([0.0, 1.0, -1.0], k=1, prepare_fn=prepare))
        direct = clf.scores(np.stack([np.full((3, 32, 32), v, np.float32) for v in (0.0, 1.0, -1.0)]))
    assert [r.predictions[0].index for r in got] == list(direct.argmax(axis=1))
    assert clf.timings.images == [2, 1]


@pytest.mark.parametrize("kwargs, message", [
    (dict(batch_size=0), r"batch_size=0: expected an integer >= 1"),
    (dict(batch_size=-1), r"batch_size=-1: expected an integer >= 1"),
    (dict(batch_size=True), r"batch_size=True: expected an integer >= 1"),
])
def test_bad_batch_size(model_path: Path, kwargs, message) -> None:
    with pytest.raises(ConfigError, match=message):
        Classifier(model_path, **kwargs)


def test_bad_top_k(model_path: Path) -> None:
    with Classifier(model_path) as clf, pytest.raises(ConfigError, match=r"k=0: expected an integer >= 1"):
        clf.classify([PHOTOS[0]], k=0)


def test_decoder_is_chosen_once_and_reported(model_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vggedge.errors import BackendUnavailable

    monkeypatch.delenv("VGGEDGE_DECODER", raising=False)
    with Classifier(model_path, "ort-cpu") as clf:
        report = clf.report()
        assert clf.classify([PHOTOS[0]], k=1)[0][0].label
    assert report["decoder"] == "cpu" and "the backend (ort-cpu) runs on the CPU" in report["decoder_reason"]
    asked = Classifier(model_path, "ort-cpu", decoder="cpu").report()  # no session needed to know it
    assert (asked["decoder"], asked["decoder_reason"]) == ("cpu", "asked for the CPU decode pool")
    with pytest.raises(BackendUnavailable, match=r"GPU decoding is not possible: the backend \(ort-cpu\)"):
        Classifier(model_path, "ort-cpu", decoder="gpu")  # refused before any session is loaded
    with pytest.raises(ConfigError, match="decoder 'GPU': choose one of auto, gpu, cpu"):
        Classifier(model_path, decoder="GPU")


def test_classifier_picks_built_engine(ten_class_model: Path, fake_trt_machine, engine_writer, tmp_path) -> None:
    plan = engine_writer(ten_class_model, tmp_path)
    from vggedge.engine.registry import record_engine

    record_engine(ten_class_model, plan)
    try:
        with Classifier(ten_class_model, batch_size=4) as clf:
            assert clf.selection.backend == "trt" and clf.runner.plan == plan
            assert clf.report()["artefact"] == str(plan) and "stand-in" in clf.report()["description"]
            assert len(clf.classify(PHOTOS, k=2)) == 3
        with Classifier(plan, batch_size=4) as clf:  # the engine itself, through its sidecar's spec
            assert clf.selection.backend == "trt" and clf.spec.num_classes == 10
            assert len(clf.classify(PHOTOS[:1], k=2)) == 1
    finally:
        from vggedge.engine.registry import index_path

        index_path(ten_class_model).unlink()


def test_precision_variant_is_fed_by_its_own_spec(model_copy: Path) -> None:
    """precision="fp16" runs m.fp16.onnx; with FP16 I/O its spec (float16 input) drives preprocessing."""
    from vggedge.precision.fp16 import write_fp16

    fp16 = write_fp16(model_copy, fp16_io=True)
    with Classifier(model_copy, "ort-cpu", precision="fp16", batch_size=2) as clf:
        assert clf.selection.artefact == fp16 and clf.spec.dtype == "float16"
        [preds] = clf.classify(PHOTOS[:1], k=3)
    assert len(preds) == 3
