"""Read, check, decode and preprocess one image of a batch job (run in parallel workers).

Bad files never stop a job: :func:`load_item` returns a :class:`Loaded` with
``error`` and ``kind`` set (``unreadable``, ``empty``, ``too-large``,
``truncated``, ``not-an-image``) instead of raising. Pixels are decoded by the
one decoder, :func:`vggedge.preprocess.decode_image` (what ``read_image`` uses:
EXIF orientation applied), and go through the one preprocessing path,
:func:`vggedge.preprocess.prepare`.
"""
from __future__ import annotations

import os
import struct
import time
from dataclasses import dataclass

import cv2
import numpy as np

from ...errors import ImageError
from ...preprocess import decode_image, decode_need, prepare, reduced_decode_enabled
from ...spec import ModelSpec
from .inputs import Item, fsspec_module, is_url

_SOURCE = "<bytes>"  # the name decode_image's messages carry; the job's error rows name the file


@dataclass(frozen=True)
class Limits:
    """Largest file (bytes) and image (pixels, read from the header before decoding) a job accepts."""

    max_bytes: int = 256 * 2**20
    max_pixels: int = 100_000_000


@dataclass
class Loaded:
    """One item after decoding: the model-ready tensor, or why there is none."""

    key: str
    tensor: np.ndarray | None = None
    error: str | None = None
    kind: str | None = None
    seconds: float = 0.0


class BadImage(ImageError):
    """An image a batch job records and skips; ``kind`` is its category."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def read_bytes(item: Item, limits: Limits) -> bytes:
    """The item's encoded bytes, refusing unreadable, empty and oversized files."""
    if item.error:
        raise BadImage("unreadable", item.error)
    if item.data is not None:
        data = item.data
    elif is_url(item.key):
        try:
            with fsspec_module().open(item.key, "rb") as handle:
                data = handle.read(limits.max_bytes + 1)
        except (OSError, ValueError) as exc:
            raise BadImage("unreadable", f"cannot read ({exc})") from None
    else:
        try:
            size = os.stat(item.key).st_size
            if size > limits.max_bytes:
                raise BadImage("too-large", f"file is {size} bytes; the limit is {limits.max_bytes} (--max-bytes)")
            with open(item.key, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            raise BadImage("unreadable", f"cannot read ({exc.strerror or exc})") from None
    if not data:
        raise BadImage("empty", "file is empty (0 bytes)")
    if len(data) > limits.max_bytes:
        raise BadImage("too-large", f"file is over {limits.max_bytes} bytes (--max-bytes)")
    return data


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG or JPEG header without decoding; None for other formats."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
            i += 1 if marker == 0xFF else 2
            continue
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[i + 5:i + 9])
            return width, height
        i += 2 + length
    return None


def check_complete(data: bytes) -> None:
    """Refuse JPEG files without an end marker and PNG files without IEND (OpenCV half-decodes them)."""
    tail = data[-1024:]
    if data[:2] == b"\xff\xd8" and b"\xff\xd9" not in tail:
        raise BadImage("truncated", f"JPEG is truncated ({len(data)} bytes, no end-of-image marker)")
    if data[:8] == b"\x89PNG\r\n\x1a\n" and b"IEND" not in tail:
        raise BadImage("truncated", f"PNG is truncated ({len(data)} bytes, no IEND chunk)")


def decode(data: bytes, limits: Limits, need: tuple[int, int, int] | None = None) -> np.ndarray:
    """Checked bytes -> a 3-channel BGR image, upright, through the one decoder (:func:`decode_image`).

    The size and truncation checks run first, on the encoded bytes; ``need`` allows a
    reduced-scale JPEG decode as :func:`vggedge.preprocess.read_image` does.
    """
    size = header_size(data)
    if size and size[0] * size[1] > limits.max_pixels:
        raise BadImage("too-large", f"image is {size[0]}x{size[1]} pixels; the limit is {limits.max_pixels} "
                                    "(--max-pixels)")
    check_complete(data)
    try:
        image = decode_image(data, need=need, source=_SOURCE)
    except ImageError as exc:
        raise BadImage("not-an-image", str(exc).replace(f"{_SOURCE}: ", "")) from None
    if image.shape[0] * image.shape[1] > limits.max_pixels:  # formats whose header size is not read above
        raise BadImage("too-large", f"image is {image.shape[1]}x{image.shape[0]} pixels; the limit is "
                                    f"{limits.max_pixels} (--max-pixels)")
    return image


def load_item(item: Item, spec: ModelSpec, limits: Limits) -> Loaded:
    """Read, decode and preprocess one item; failures come back as ``Loaded.error`` (never raised).

    Large JPEGs decode at a reduced scale when the process-wide switch is on
    (:func:`vggedge.preprocess.reduced_decode_enabled`), as in every other app.
    """
    t0 = time.perf_counter()
    try:
        need = decode_need(spec) if reduced_decode_enabled() else None
        tensor = prepare(decode(read_bytes(item, limits), limits, need), spec)
        return Loaded(item.key, tensor, seconds=time.perf_counter() - t0)
    except BadImage as exc:
        return Loaded(item.key, None, str(exc), exc.kind, time.perf_counter() - t0)
    except (ImageError, cv2.error, ValueError, MemoryError) as exc:
        return Loaded(item.key, None, f"cannot decode ({exc})", "not-an-image", time.perf_counter() - t0)
