"""The one preprocessing path (OpenCV), driven by a ModelSpec.

Calibration, inference, benchmarks and the stream and batch applications all
call :func:`preprocess` (or :func:`prepare` per image), so what the model sees
is the same everywhere. Arrays passed in are taken as OpenCV BGR frames.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Sequence, Union

import cv2
import numpy as np

from .errors import ImageError
from .spec import ModelSpec, Preprocessing

ImageLike = Union[str, Path, np.ndarray]
INTERPOLATION = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA,
                 "cubic": cv2.INTER_CUBIC, "nearest": cv2.INTER_NEAREST}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm")


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file to a 3-channel BGR array (uint8, or float32 in 0-255 for 16-bit files).

    Grayscale and RGBA images are converted; unreadable or empty files raise
    ImageError naming the file.
    """
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise ImageError(f"{path}: cannot read image file ({exc.strerror or exc})") from None
    if data.size == 0:
        raise ImageError(f"{path}: image file is empty (0 bytes)")
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise ImageError(f"{path}: not a decodable image ({data.size} bytes); expected JPEG, PNG, BMP, TIFF or WebP")
    return to_bgr(image, source=str(path))


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


def prepare(image: ImageLike, spec: ModelSpec, out: np.ndarray | None = None) -> np.ndarray:
    """One image (path or BGR array) -> one normalised tensor in the spec's layout and dtype.

    ``out`` (optional) receives the result, e.g. a slice of a pinned batch buffer.
    """
    source = str(image) if not isinstance(image, np.ndarray) else "<array>"
    bgr = read_image(image) if not isinstance(image, np.ndarray) else to_bgr(image, source)
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
               out: np.ndarray | None = None) -> np.ndarray:
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
            list(pool.map(lambda item: prepare(item[1], spec, out=batch[item[0]]), enumerate(images)))
    else:
        for i, image in enumerate(images):
            prepare(image, spec, out=batch[i])
    return batch


def list_images(folder: str | Path) -> list[Path]:
    """Image files in a folder (recursively), sorted so the order never varies between runs."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(f"{folder}: not a directory of images")
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
