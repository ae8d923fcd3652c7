"""Shared fixtures of the faults suite: a small model exported through the CLI, fresh folders of it and of photos.

Every fault test drives ``vggedge`` as a user would (a child process, real files)
and asserts three things: the message, the exit status, and the files left behind.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterator

import pytest
from faultkit import CALIB, SMALL, vggedge

@pytest.fixture(scope="session")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The small FP32 model and its sidecar, exported once through the CLI."""
    folder = tmp_path_factory.mktemp("faults-model")
    result = vggedge("export", *SMALL, "--out", folder / "m.onnx")
    assert result.returncode == 0, result.stderr
    yield folder / "m.onnx"
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def model_copy(small_model: Path, tmp_path: Path) -> Iterator[Path]:
    """A fresh folder holding the small model (hard-linked: no 59 MB copy) and its sidecar."""
    folder = tmp_path / "model"
    folder.mkdir()
    try:
        os.link(small_model, folder / small_model.name)
    except OSError:
        shutil.copy(small_model, folder / small_model.name)
    shutil.copy(small_model.with_name("m.spec.json"), folder / "m.spec.json")
    yield folder / small_model.name
    shutil.rmtree(folder, ignore_errors=True)  # artefacts are tens of MB: do not keep them


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """A folder with copies of the 12 calib/ photographs."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for path in sorted(CALIB.glob("*.jpg")):
        shutil.copy(path, folder / path.name)
    return folder
