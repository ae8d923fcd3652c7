"""Keras 3 ``.keras`` archives without Keras: config.json parsing, options, and errors naming the file."""
from __future__ import annotations

import json
import zipfile

import pytest

from vggedge.errors import WeightsError
from vggedge.model.export import export_options
from vggedge.model.vgg16 import VGG16Options
from vggedge.model.weights import load_weights

OPTS = VGG16Options(include_rescaling=False, include_top=True, num_classes=10, input_shape=(64, 64, 3))


def test_keras_archive_errors(tmp_path):
    bad = tmp_path / "broken.keras"
    bad.write_bytes(b"not a zip")
    with pytest.raises(WeightsError, match=r"broken\.keras: not a readable \.keras archive with a config\.json"):
        load_weights(bad, OPTS)
    other = tmp_path / "resnet.keras"
    layers = [{"class_name": "InputLayer", "config": {"name": "in", "batch_shape": [None, 64, 64, 3]}},
              {"class_name": "Conv2D", "config": {"name": "conv1"}},
              {"class_name": "BatchNormalization", "config": {"name": "bn1"}}]
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("config.json", json.dumps({"class_name": "Functional", "config": {"layers": layers}}))
    with pytest.raises(WeightsError, match=r"resnet\.keras: layer 'bn1' is a BatchNormalization, which VGG16 "
                                           r"does not have"):
        load_weights(other, OPTS)


def test_keras_cv_config_options(tmp_path):
    """A VGG16Backbone config.json gives the options; a size-agnostic input becomes VGG16's 224x224."""
    path = tmp_path / "backbone.keras"
    config = {"include_rescaling": True, "include_top": False, "name": "VGG16", "input_shape": [None, None, 3],
              "input_tensor": None, "pooling": "max", "num_classes": None, "classifier_activation": "softmax",
              "trainable": True}
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps({"class_name": "VGG16Backbone", "config": config}))
    assert export_options(path) == VGG16Options(include_rescaling=True, include_top=False, pooling="max",
                                                input_shape=(224, 224, 3), name="VGG16")
    assert export_options(path, input_shape=(64, 64, 3), pooling="avg").input_shape == (64, 64, 3)
