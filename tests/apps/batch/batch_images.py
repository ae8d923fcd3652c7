"""Image sets for the batch tests (imported by conftest.py and the test modules; a unique module name)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[3]
PHOTOS = sorted((REPO / "calib").glob("*.jpg"))
#: broken files and the kind of failure each must be recorded with
BROKEN = {"empty.jpg": "empty", "not_an_image.jpg": "not-an-image", "truncated.jpg": "truncated",
          "truncated.png": "truncated", "huge.png": "too-large", "dangling_link.jpg": "unreadable"}
MAX_PIXELS = 3_000_000  # huge.png is 2000x2000 = 4 MP


def write_image_set(root: Path) -> tuple[list[str], dict[str, str]]:
    """calib/ photos as given, re-encoded smaller (JPEG) and tiny (PNG, in a subfolder), plus broken files.

    Returns (good image paths, {broken path: expected kind}).
    """
    good: list[str] = []
    (root / "small").mkdir(parents=True)
    (root / "tiny" / "deeper").mkdir(parents=True)
    for photo in PHOTOS:
        image = cv2.imread(str(photo))
        shutil.copy(photo, root / photo.name)
        small = cv2.resize(image, (image.shape[1] // 3, image.shape[0] // 3), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(root / "small" / photo.name), small, [cv2.IMWRITE_JPEG_QUALITY, 80])
        cv2.imwrite(str(root / "tiny" / "deeper" / (photo.stem + ".png")), cv2.resize(image, (48, 40)))
        good += [str(root / photo.name), str(root / "small" / photo.name),
                 str(root / "tiny" / "deeper" / (photo.stem + ".png"))]
    data = PHOTOS[0].read_bytes()
    (root / "empty.jpg").write_bytes(b"")
    (root / "not_an_image.jpg").write_text("this is text, not a JPEG\n")
    (root / "truncated.jpg").write_bytes(data[: len(data) // 2])
    png = cv2.imencode(".png", cv2.imread(str(PHOTOS[1])))[1].tobytes()
    (root / "truncated.png").write_bytes(png[: len(png) // 2])
    cv2.imwrite(str(root / "huge.png"), np.zeros((2000, 2000, 3), np.uint8))
    os.symlink(root / "missing.jpg", root / "dangling_link.jpg")
    broken = {str(root / name): kind for name, kind in BROKEN.items()}
    return sorted(good), broken
