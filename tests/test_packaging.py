"""pyproject's dependencies keep a Jetson's own OpenCV and TensorRT in place (docs/jetson.md)."""
from __future__ import annotations

from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def _project() -> dict:
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_pypi_opencv_is_not_installed_on_aarch64() -> None:
    opencv = [Requirement(r) for r in _project()["dependencies"] if r.startswith("opencv")]
    assert len(opencv) == 1 and opencv[0].marker is not None
    assert opencv[0].marker.evaluate({"platform_machine": "x86_64"})
    assert not opencv[0].marker.evaluate({"platform_machine": "aarch64"})


def test_jetson_extra_replaces_nothing_jetpack_ships() -> None:
    extras = _project()["optional-dependencies"]
    names = {Requirement(r).name for r in extras["jetson"]}
    assert names == {"pycuda"}  # no OpenCV wheel, no onnxruntime-gpu (not on PyPI for aarch64), no tensorrt
    assert {Requirement(r).name for r in extras["opencv"]} == {"opencv-python-headless"}
