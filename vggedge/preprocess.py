"""The one preprocessing path (OpenCV), driven by a ModelSpec.

Calibration, inference, benchmarks and the stream and batch applications all
call :func:`preprocess` (or :func:`prepare` per image), so what the model sees
is the same everywhere. Arrays passed in are taken as OpenCV BGR frames.
"""
from __future__ import annotations

import functools
import os
import stat
from pathlib import Path
from typing import Sequence, Union

import cv2
import numpy as np

from . import image_meta
from .env import reduced_decode as _reduced_from_environment
from .errors import ImageError
from .image_header import MAX_DECODE_PIXELS, image_size
from .spec import ModelSpec, Preprocessing

ImageLike = Union[str, Path, np.ndarray]
INTERPOLATION = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA,
                 "cubic": cv2.INTER_CUBIC, "nearest": cv2.INTER_NEAREST}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm")


#: Decode JPEGs at a reduced scale (libjpeg's DCT scaling) when the model needs at most half the size.
#: Off by default: on the FP32 model its top-1 agreement with full-size decoding was below 100% (README).
#: The one switch for every app (classify, compare, demo, bench --end-to-end, batch, calibration): set it
#: with :func:`set_reduced_decode` or ``VGGEDGE_REDUCED_DECODE=1``; see :func:`reduced_decode_enabled`.
REDUCED_DECODE = False
_REDUCED = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}


def read_image(path: str | Path, *, need: tuple[int, int, int] | None = None) -> np.ndarray:
    """Decode an image file upright (EXIF orientation applied) to 3-channel BGR (uint8, or float32 0-255 for 16-bit).

    ``need`` = (height, width, shorter side) the caller will resize to; when given,
    a JPEG is decoded at the largest reduced scale (1/2, 1/4, 1/8) whose upright
    size still covers it. Grayscale and RGBA images are converted; unreadable or
    empty files raise ImageError naming the file.
    """
    path = Path(path)
    return decode_image(read_file(path), need=need, source=str(path))


def read_file(path: str | Path) -> bytes:
    """An image file's bytes; ImageError naming the file when it is missing, unreadable or not a regular
    file (a pipe or /dev/zero would be read forever). Every decoder, CPU or GPU, reads through here."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise ImageError(f"{path}: not a regular file (a pipe, device or socket); not read")
        return Path(path).read_bytes()
    except OSError as exc:
        raise ImageError(f"{path}: cannot read image file ({exc.strerror or exc})") from None


def decode_image(data: bytes | memoryview | np.ndarray, *, need: tuple[int, int, int] | None = None,
                 source: str = "<bytes>") -> np.ndarray:
    """Decode an encoded image held in memory exactly as :func:`read_image` decodes a file.

    For bytes that never were a local file (tar shards, URLs); ``source`` names them in errors.
    """
    data = data if isinstance(data, np.ndarray) else np.frombuffer(data, dtype=np.uint8)
    if data.size == 0:
        raise ImageError(f"{source}: image file is empty (0 bytes)")
    view = memoryview(data)
    size = image_size(view)
    if size and size[0] * size[1] > MAX_DECODE_PIXELS:
        raise ImageError(f"{source}: image is {size[0]}x{size[1]} pixels; over {MAX_DECODE_PIXELS} "
                         "(MAX_DECODE_PIXELS), not decoded")
    try:
        return _decode(data, view, need, source)
    except (cv2.error, MemoryError) as exc:  # a decoder's own refusal: this image only
        raise ImageError(f"{source}: cannot decode ({type(exc).__name__}: {str(exc).strip()[-200:]})") from None


def _decode(data: np.ndarray, view: memoryview, need: tuple[int, int, int] | None, source: str) -> np.ndarray:
    if image_meta.is_jpeg(view):
        orientation, stored = image_meta.jpeg_header(view)
        scale = reduced_scale(stored, orientation, need) if need and stored else 1
        flags = _REDUCED[scale] if scale > 1 else cv2.IMREAD_COLOR
        image = cv2.imdecode(data, flags | cv2.IMREAD_IGNORE_ORIENTATION)
    else:
        orientation = image_meta.orientation_of(view)
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)  # 16-bit and alpha kept; orientation never applied
    if image is None or image.size == 0:
        raise ImageError(f"{source}: not a decodable image ({data.size} bytes); expected JPEG, PNG, GIF, BMP, TIFF or WebP")
    return to_bgr(image_meta.apply_orientation(image, orientation), source=source)


def set_reduced_decode(on: bool) -> None:
    """Turn reduced-scale JPEG decoding on or off for every app in this process (:data:`REDUCED_DECODE`)."""
    global REDUCED_DECODE
    REDUCED_DECODE = bool(on)


def reduced_decode_enabled(reduced_decode: bool | None = None) -> bool:
    """Whether JPEGs decode at a reduced scale: the caller's choice when given, else the process-wide switch.

    The switch is on when :data:`REDUCED_DECODE` is set, when ``VGGEDGE_REDUCED_DECODE=1``
    (reaches the CLI and worker processes), or when ``vggedge.preprocess.REDUCED_DECODE = True``
    was written: ``vggedge.preprocess`` is the exported :func:`preprocess` function, not this
    module, so that assignment lands on the function and is honoured from there.
    """
    if reduced_decode is not None:
        return bool(reduced_decode)
    return bool(REDUCED_DECODE or getattr(preprocess, "REDUCED_DECODE", False) or _reduced_from_environment())


def reduced_scale(stored: tuple[int, int], orientation: int, need: tuple[int, int, int]) -> int:
    """The largest JPEG decode divisor (8, 4, 2; else 1) whose upright size covers ``need``."""
    h, w = stored if orientation < 5 else stored[::-1]
    need_h, need_w, need_short = need
    for scale in (8, 4, 2):
        rh, rw = -(-h // scale), -(-w // scale)  # libjpeg rounds scaled sizes up
        if rh >= need_h and rw >= need_w and min(rh, rw) >= need_short:
            return scale
    return 1


def decode_need(spec: ModelSpec) -> tuple[int, int, int]:
    """(height, width, shorter side) a decoded image must cover for the spec's resize policy."""
    pre = spec.preprocessing
    return spec.height, spec.width, pre.resize_shorter if pre.resize == "shorter_crop" else 0


def to_bgr(image: np.ndarray, source: str = "<array>") -> np.ndarray:
    """Normalise an OpenCV image to 3-channel BGR; 16-bit becomes float32 in 0-255."""
    if image.dtype == np.uint16:
        image = image.astype(np.float32) * np.float32(255.0 / 65535.0)
    elif image.dtype not in (np.uint8, np.float32):
        raise ImageError(f"{source}: unsupported pixel type {image.dtype}; expected 8- or 16-bit images")
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise ImageError(f"{source}: image has shape {image.shape}; expected HxW, HxWx1, HxWx3 or HxWx4")


def resize_for(image: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Resize (and centre-crop) per the spec's policy to spec.height x spec.width."""
    pre = spec.preprocessing
    interp = INTERPOLATION[pre.interpolation]
    h, w = image.shape[:2]
    if pre.resize == "direct":
        if (h, w) == (spec.height, spec.width):
            return image
        return cv2.resize(image, (spec.width, spec.height), interpolation=interp)
    scale = pre.resize_shorter / min(h, w)
    nh, nw = max(spec.height, round(h * scale)), max(spec.width, round(w * scale))
    resized = cv2.resize(image, (nw, nh), interpolation=interp) if (nh, nw) != (h, w) else image
    top, left = (nh - spec.height) // 2, (nw - spec.width) // 2
    return resized[top:top + spec.height, left:left + spec.width]


@functools.lru_cache(maxsize=32)
def _affine(pre: Preprocessing) -> tuple[np.ndarray, np.ndarray]:
    """(gain, offset) so that normalised = pixel * gain - offset, per channel in model order.

    Cached per (frozen, hashable) Preprocessing: computed once, not per image.
    """
    std = np.asarray(pre.std, dtype=np.float32)
    gain = np.float32(pre.scale) / std
    offset = np.asarray(pre.mean, dtype=np.float32) / std
    return gain, offset


def prepare(image: ImageLike, spec: ModelSpec, out: np.ndarray | None = None, *,
            reduced_decode: bool | None = None) -> np.ndarray:
    """One image (path or BGR array) -> one normalised tensor in the spec's layout and dtype.

    ``out`` (optional) receives the result, e.g. a slice of a pinned batch buffer.
    Files are decoded upright (EXIF orientation); ``reduced_decode`` (default: the
    switch, :func:`reduced_decode_enabled`) lets large JPEGs decode at 1/2, 1/4 or 1/8 scale when
    that still covers the model's input.
    """
    source = str(image) if not isinstance(image, np.ndarray) else "<array>"
    if isinstance(image, np.ndarray):
        bgr = to_bgr(image, source)
    else:
        bgr = read_image(image, need=decode_need(spec) if reduced_decode_enabled(reduced_decode) else None)
    if spec.channels != 3:
        raise ImageError(f"{source}: the model takes {spec.channels} channels; image preprocessing supports 3")
    pixels = resize_for(bgr, spec)
    if spec.preprocessing.channel_order == "RGB":
        pixels = pixels[:, :, ::-1]
    gain, offset = _affine(spec.preprocessing)
    hwc = pixels.astype(np.float32) * gain - offset
    tensor = hwc.transpose(2, 0, 1) if spec.layout == "NCHW" else hwc
    if out is None:
        return np.ascontiguousarray(tensor, dtype=np.dtype(spec.dtype))
    out[...] = tensor
    return out


def preprocess(images: Sequence[ImageLike], spec: ModelSpec, *, threads: int = 1,
               out: np.ndarray | None = None, reduced_decode: bool | None = None) -> np.ndarray:
    """A batch of images (paths or BGR arrays) -> an (N, ...) array ready for the model's input.

    ``threads`` > 1 prepares images in parallel (OpenCV releases the GIL); ``out``
    receives the batch (e.g. a pinned host buffer) instead of a new array.
    """
    if len(images) == 0:
        raise ImageError("preprocess() got no images; expected at least one path or array")
    batch = out if out is not None else np.empty((len(images), *spec.input_shape[1:]), dtype=np.dtype(spec.dtype))
    if threads > 1 and len(images) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda item: prepare(item[1], spec, out=batch[item[0]], reduced_decode=reduced_decode), enumerate(images)))
    else:
        for i, image in enumerate(images):
            prepare(image, spec, out=batch[i], reduced_decode=reduced_decode)
    return batch


def list_images(folder: str | Path) -> list[Path]:
    """Image files in a folder (recursively), sorted so the order never varies between runs.

    Every entry with an image name is listed, so one that cannot be read is reported, not silently skipped.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(f"{folder}: not a directory of images")
    # pipes, devices and dangling links with an image name are listed too: reading them reports them, by name
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir())
