"""The ``normalised:SEED`` stand-in: fitted on the repository's photos, each photo its own clear class."""
from __future__ import annotations

import numpy as np
from vggedge.model.weights.normalised import fit_head, load_normalised, photos_fingerprint, repository_photos
from vggedge.model.vgg16 import VGG16Options
from vggedge.paths import CALIB_DIR, EVAL_DIR
from vggedge.preprocess import list_images


def test_fitted_on_calib_then_eval_photos():
    photos = repository_photos()
    assert photos == list_images(CALIB_DIR) + list_images(EVAL_DIR)
    assert len(photos) == 18


def test_head_gives_every_group_its_own_class_when_classes_suffice():
    rng = np.random.default_rng(0)
    features = rng.random((36, 64))
    groups = np.tile(np.arange(18), 2)
    scores = features @ fit_head(features, groups, 1000, seed=0).T
    winners = scores.argmax(axis=1)
    assert len(set(winners[:18])) == 18  # 18 distinct classes, one per group
    assert np.array_equal(winners[:18], winners[18:])  # both views of a group agree


def test_head_shares_classes_when_there_are_fewer_classes_than_photos():
    features = np.random.default_rng(1).random((36, 64))
    head = fit_head(features, np.tile(np.arange(18), 2), 10, seed=0)
    assert head.shape == (10, 64)
    assert set((features @ head.T).argmax(axis=1)) == set(range(10))  # every class is someone's answer


def test_small_model_with_few_classes_exports(tmp_path):
    options = VGG16Options(include_rescaling=False, include_top=True, num_classes=5, input_shape=(32, 32, 3))
    loaded = load_normalised(options, 0)
    assert loaded.arrays["predictions/kernel"].shape[0] == 5
    assert loaded.sha256 == photos_fingerprint(repository_photos())


def test_fingerprint_changes_with_the_photos(tmp_path):
    photos = repository_photos()[:3]
    copies = []
    for p in photos:
        copies.append(tmp_path / p.name)
        copies[-1].write_bytes(p.read_bytes())
    assert photos_fingerprint(copies) == photos_fingerprint(photos)
    copies[0].write_bytes(copies[0].read_bytes() + b"\0")
    assert photos_fingerprint(copies) != photos_fingerprint(photos)


def test_eval_photos_get_distinct_clear_answers(stream_model):
    """Each eval/ photo is answered by its own class with a clear margin: the stand-in knows its domain."""
    import onnxruntime as ort

    from vggedge.preprocess import preprocess
    from vggedge.spec import load_spec_for

    model = stream_model  # normalised:0, 32x32, 1000 classes (tests/conftest.py)
    spec = load_spec_for(model)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    probs = session.run(None, {spec.input_name: preprocess(list_images(EVAL_DIR), spec)})[0]
    top = np.sort(np.log(probs), axis=1)
    assert len(set(probs.argmax(axis=1))) == len(probs)
    assert np.all(top[:, -1] - top[:, -2] > 0.5)
