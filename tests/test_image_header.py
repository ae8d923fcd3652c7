"""Image sizes from headers for every decoded format, and where a JPEG's image data ends."""
from __future__ import annotations

import io
import struct

import cv2
import numpy as np
import pytest
from PIL import Image

from vggedge.image_header import image_size, jpeg_end

SIZE = (50, 30)


def pil_bytes(fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", SIZE, (10, 200, 30)).save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".bmp", ".webp", ".tiff", ".ppm"])
def test_opencv_encoded_formats(suffix: str) -> None:
    image = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
    assert image_size(cv2.imencode(suffix, image)[1].tobytes()) == SIZE


@pytest.mark.parametrize("fmt,kw", [("GIF", {}), ("WEBP", {"lossless": True}), ("WEBP", {"quality": 50}),
                                    ("WEBP", {"exif": b"Exif\0\0II*\0"}), ("TIFF", {"compression": "tiff_lzw"}),
                                    ("JPEG", {"progressive": True}), ("PPM", {})])
def test_pillow_encoded_formats(fmt: str, kw: dict) -> None:
    assert image_size(pil_bytes(fmt, **kw)) == SIZE


def test_a_gif_frame_beyond_the_logical_screen_counts() -> None:
    data = bytearray(pil_bytes("GIF"))
    pos = data.index(b"\x2c", 13)  # the image descriptor
    data[pos + 5:pos + 9] = struct.pack("<HH", 20000, 20000)
    assert image_size(bytes(data)) == (20000, 20000)


def test_garbage_and_short_headers_give_none() -> None:
    for data in (b"", b"\xff\xd8", b"\x89PNG\r\n\x1a\n", b"RIFF\0\0\0\0WEBPVP8 ", b"II*\0\xff\xff\xff\xff", b"hello"):
        assert image_size(data) is None


def test_jpeg_end_ignores_appended_data_and_thumbnails() -> None:
    image = cv2.imencode(".jpg", np.full((40, 60, 3), 128, np.uint8))[1].tobytes()
    assert jpeg_end(image) == len(image)
    motion = image + b"\0\0\0\x18ftypmp42" + b"\xff\xd9" * 3 + bytes(5000)  # a Motion Photo's video after EOI
    assert jpeg_end(motion) == len(image)
    assert jpeg_end(image[: len(image) // 2]) is None
    thumb = image[:2] + b"\xff\xe1" + struct.pack(">H", 2 + len(image)) + image + image[2:]  # thumbnail in APP1
    assert jpeg_end(thumb[: len(thumb) - 100]) is None
    assert jpeg_end(pil_bytes("JPEG", progressive=True)) is not None
