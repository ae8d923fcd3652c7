"""What an image file says about itself before decoding: EXIF orientation and (JPEG) stored size.

Phones save photos as the sensor saw them and record how to turn them in the
EXIF Orientation tag; browsers and viewers apply it, and so must we. OpenCV
applies it only for some formats, flags and versions (``IMREAD_UNCHANGED``
never does), so vggedge decodes with orientation ignored and applies it here,
the same way for every format and decode scale.
"""
from __future__ import annotations

import struct
from typing import Optional

import cv2
import numpy as np

ORIENTATION_TAG = 0x0112
JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def tiff_orientation(tiff: bytes) -> int:
    """The Orientation tag (1-8) of IFD0 in a TIFF/EXIF block; 1 when absent or unreadable."""
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return 1
    order = "<" if tiff[:2] == b"II" else ">"
    try:
        (ifd,) = struct.unpack_from(order + "I", tiff, 4)
        (count,) = struct.unpack_from(order + "H", tiff, ifd)
        for i in range(count):
            tag, kind, _, value = struct.unpack_from(order + "HHI4s", tiff, ifd + 2 + 12 * i)
            if tag == ORIENTATION_TAG and kind == 3:
                (found,) = struct.unpack_from(order + "H", value, 0)
                return found if 1 <= found <= 8 else 1
    except struct.error:
        return 1
    return 1


def jpeg_header(data: bytes) -> tuple[int, Optional[tuple[int, int]]]:
    """(EXIF orientation, stored (height, width)) of a JPEG, read from its markers up to the scan."""
    orientation, size, pos = 1, None, 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            break
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        if marker in (0xDA, 0xD9):  # start of scan / end of image: no more headers
            break
        (length,) = struct.unpack_from(">H", data, pos + 2)
        segment = data[pos + 4:pos + 2 + length]
        if marker == 0xE1 and segment[:6] == b"Exif\x00\x00":
            orientation = tiff_orientation(bytes(segment[6:]))
        elif marker in JPEG_SOF and len(segment) >= 5:
            size = struct.unpack_from(">HH", segment, 1)
        pos += 2 + length
    return orientation, size


def png_orientation(data: bytes) -> int:
    """EXIF orientation from a PNG's ``eXIf`` chunk (before the image data)."""
    pos = 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        if kind == b"eXIf":
            return tiff_orientation(bytes(data[pos + 8:pos + 8 + length]))
        if kind in (b"IDAT", b"IEND"):
            return 1
        pos += 12 + length
    return 1


def webp_orientation(data: bytes) -> int:
    """EXIF orientation from a WebP's ``EXIF`` chunk."""
    pos = 12
    while pos + 8 <= len(data):
        kind, length = struct.unpack_from("<4sI", data, pos)
        if kind == b"EXIF":
            block = bytes(data[pos + 8:pos + 8 + length])
            return tiff_orientation(block[6:] if block.startswith(b"Exif\x00\x00") else block)
        pos += 8 + length + (length & 1)
    return 1


def is_jpeg(data: bytes) -> bool:
    return data[:3] == b"\xff\xd8\xff"


def orientation_of(data: bytes) -> int:
    """EXIF orientation of an encoded JPEG, PNG or WebP (1: as stored)."""
    if is_jpeg(data):
        return jpeg_header(data)[0]
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return png_orientation(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return webp_orientation(data)
    return 1


def apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """Turn a decoded image upright per EXIF orientation (the same transforms OpenCV's imread uses)."""
    if orientation == 2:
        return cv2.flip(image, 1)
    if orientation == 3:
        return cv2.flip(image, -1)
    if orientation == 4:
        return cv2.flip(image, 0)
    if orientation >= 5:
        turned = cv2.transpose(image)
        return {5: turned, 6: cv2.flip(turned, 1), 7: cv2.flip(turned, -1), 8: cv2.flip(turned, 0)}[orientation]
    return image
