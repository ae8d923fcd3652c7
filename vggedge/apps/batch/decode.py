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
import stat
import time
from dataclasses import dataclass

import cv2
import numpy as np

from ...errors import ImageError
from ...image_header import image_size, jpeg_end
from ...preprocess import decode_image, decode_need, prepare, reduced_decode_enabled
from ...spec import ModelSpec
from .inputs import Item, is_url
from .remote import RemoteError, read_url

_SOURCE = "<bytes>"  # the name decode_image's messages carry; the job's error rows name the file


@dataclass(frozen=True)
class Limits:
    """Largest file (bytes) and image (pixels, read from the header before decoding) a job accepts,
    and the seconds a remote read may wait for data (``--read-timeout``)."""

    max_bytes: int = 256 * 2**20
    max_pixels: int = 100_000_000
    timeout: float = 30.0


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
    """The item's encoded bytes, refusing unreadable, empty, oversized and non-regular files.

    A local path is checked with ``stat`` before it is opened: FIFOs, devices and
    sockets (and links to them, such as ``x.jpg -> /dev/zero``) are refused
    without opening them, and no more than ``max_bytes`` + 1 bytes are ever read.
    """
    if item.error:
        raise BadImage(item.kind or "unreadable", item.error)
    if item.data is not None:
        data = item.data
    elif is_url(item.key):
        try:
            data = read_url(item.key, limits.max_bytes, limits.timeout)
        except RemoteError as exc:
            raise BadImage(exc.kind, str(exc)) from None
    else:
        data = _read_local(item.key, limits.max_bytes)
    if not data:
        raise BadImage("empty", "file is empty (0 bytes)")
    if len(data) > limits.max_bytes:
        raise BadImage("too-large", f"file is over {limits.max_bytes} bytes (--max-bytes)")
    return data


def _read_local(path: str, max_bytes: int) -> bytes:
    try:
        info = os.stat(path)
        kind = special_kind(info.st_mode)
        if kind:
            raise BadImage("unreadable", f"not a regular file ({kind}); not opened")
        if info.st_size > max_bytes:
            raise BadImage("too-large", f"file is {info.st_size} bytes; the limit is {max_bytes} (--max-bytes)")
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
        with open(fd, "rb") as handle:
            kind = special_kind(os.fstat(fd).st_mode)  # replaced between stat and open
            if kind:
                raise BadImage("unreadable", f"not a regular file ({kind}); not read")
            return handle.read(max_bytes + 1)
    except OSError as exc:
        raise BadImage("unreadable", f"cannot read ({exc.strerror or exc})") from None


def special_kind(mode: int) -> str | None:
    """What a non-regular file is (``named pipe``, ``device``, ``socket``, ``folder``); None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "named pipe"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISDIR(mode):
        return "folder"
    return "special file"


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the image's header without decoding (every format vggedge decodes); None if unknown."""
    return image_size(data)


def check_complete(data: bytes) -> bytes | memoryview:
    """The image's own bytes: refuse JPEGs that stop before their end marker and PNGs without IEND
    (OpenCV half-decodes them); data after a JPEG's end (Motion Photos, maker data) is cut off, as viewers do."""
    if data[:2] == b"\xff\xd8":
        end = jpeg_end(data)
        if end is None:
            raise BadImage("truncated", f"JPEG is truncated ({len(data)} bytes, no end-of-image marker)")
        return memoryview(data)[:end] if end < len(data) else data
    if data[:8] == b"\x89PNG\r\n\x1a\n" and b"IEND" not in data:
        raise BadImage("truncated", f"PNG is truncated ({len(data)} bytes, no IEND chunk)")
    return data


def check_encoded(data: bytes, limits: Limits) -> bytes | memoryview:
    """The checks every image passes before any decoder sees it (CPU or GPU): a known format and size from its
    header, within ``--max-pixels``, and complete; returns the image's own bytes."""
    size = header_size(data)
    if size is None:
        raise BadImage("not-an-image", f"not a decodable image ({len(data)} bytes; its header names no known format "
                                       "and size); expected JPEG, PNG, GIF, BMP, TIFF, WebP or PNM")
    if size[0] * size[1] > limits.max_pixels:
        raise BadImage("too-large", f"image is {size[0]}x{size[1]} pixels; the limit is {limits.max_pixels} "
                                    "(--max-pixels)")
    return check_complete(data)


def decode(data: bytes, limits: Limits, need: tuple[int, int, int] | None = None) -> np.ndarray:
    """Checked bytes -> a 3-channel BGR image, upright, through the one decoder (:func:`decode_image`).

    The size and truncation checks run first, on the encoded bytes; ``need`` allows a
    reduced-scale JPEG decode as :func:`vggedge.preprocess.read_image` does.
    """
    data = check_encoded(data, limits)
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
