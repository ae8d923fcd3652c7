"""Shared fixtures: a small classifier and a video made from the calib/ photos (stream tests)."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parents[1]
CALIB_PHOTOS = sorted((REPO / "calib").glob("*.jpg"))
#: frames each calib photo is held for in :func:`calib_clip`
HOLD = 3
CLIP_SIZE = (160, 120)


@pytest.fixture(scope="session")
def stream_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A 32x32 VGG16 with data-normalised weights and 1000 classes (fast on 2 cores, stable top-1 on photos)."""
    from vggedge.model.export import export_vgg16
    from vggedge.model.vgg16 import VGG16Options

    path = tmp_path_factory.mktemp("stream_model") / "vgg16_32.onnx"
    export_vgg16("normalised:0", path, VGG16Options(include_rescaling=False, include_top=True, num_classes=1000,
                                                    input_shape=(32, 32, 3)))
    yield path
    for leftover in path.parent.iterdir():  # about 150 MB: do not leave it in pytest's kept temp folders
        leftover.unlink()


def calib_frames(size: tuple[int, int] = CLIP_SIZE) -> list:
    """The calib/ photos resized to one frame size (BGR arrays)."""
    import cv2

    return [cv2.resize(cv2.imread(str(p)), size, interpolation=cv2.INTER_AREA) for p in CALIB_PHOTOS]


def write_clip(path: Path, frames: list, hold: int = HOLD, fps: float = 10.0) -> Path:
    """Write ``frames`` (each ``hold`` times) to an MJPEG AVI with OpenCV's VideoWriter."""
    import cv2

    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert writer.isOpened(), f"OpenCV cannot write {path}"
    for frame in frames:
        for _ in range(hold):
            writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="session")
def calib_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """calib/ photos at 160x120, each held for HOLD frames, 10 fps (12 * 3 = 36 frames)."""
    return write_clip(tmp_path_factory.mktemp("clips") / "calib.avi", calib_frames())
