"""Shared fixtures for the batch tests: a small structured model and a folder of good and broken images."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from batch_images import write_image_set
from small_models import normalised_32, remove

from vggedge.model.export import export_vgg16
from vggedge.model.vgg16 import VGG16Options


@pytest.fixture(scope="session")
def batch_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``normalised:0`` weights at 32x32 with 16 classes: each calib photo gets its own, clear top-1."""
    folder = tmp_path_factory.mktemp("batch-model")
    yield normalised_32(folder, 16)
    remove(folder)


@pytest.fixture(scope="session")
def features_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A Keras-CV style backbone: include_top=False with average pooling (512 features)."""
    path = tmp_path_factory.mktemp("batch-features") / "vgg16_feat.onnx"
    export_vgg16("random:1", path, VGG16Options(include_rescaling=False, include_top=False, pooling="avg",
                                                input_shape=(32, 32, 3)))
    yield path
    path.unlink()


@pytest.fixture(scope="session")
def image_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], dict[str, str]]:
    """(folder, good paths, {broken path: kind}); read-only for tests (copy it to modify)."""
    root = tmp_path_factory.mktemp("batch-images")
    good, broken = write_image_set(root)
    return root, good, broken
