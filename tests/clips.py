"""Test clips made from the calib/ photos (stream and video tests import this; fixtures are in conftest.py)."""
from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CALIB_PHOTOS = sorted((REPO / "calib").glob("*.jpg"))
#: frames each calib photo is held for in :func:`calib_clip`
HOLD = 3
CLIP_SIZE = (160, 120)


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
