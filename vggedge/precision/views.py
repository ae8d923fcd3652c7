"""The documented, deterministic views `vggedge compare --augment` evaluates per photo.

42 transforms, each applied to the photo and to its mirror image: 84 views per
photo, the same on every machine (no random state; the noise views use fixed
seeds). The table, in order:

- ``orig``: the photo as decoded;
- ``crop80-tl/tr/bl/br/c``: 80% crops at the corners and the centre;
- ``crop65-tl/tr/bl/br/c``: 65% crops at the corners and the centre;
- ``crop90-c``, ``crop50-c``: centre crops;
- ``scale0.5``, ``scale0.35``, ``scale0.25``: downscaled (INTER_AREA), detail lost before the model's resize;
- ``rot-10`` ... ``rot+10``: rotations of -10, -6, -3, +3, +6, +10 degrees (reflected border);
- ``bright-40/-20/+20/+40``: brightness offsets (pixel levels);
- ``contrast0.6/0.8/1.2/1.4``: contrast about mid-grey;
- ``gamma0.7``, ``gamma1.4``;
- ``jpeg10/20/35/50/70/90``: JPEG re-encoding at those qualities;
- ``blur3``, ``blur5``: Gaussian blur (kernel size);
- ``noise4``, ``noise8``: Gaussian noise of that sigma (seeded).

Mirrored views are named ``flip+<name>``.
"""
from __future__ import annotations

from typing import Callable, Iterator

import cv2
import numpy as np

Transform = Callable[[np.ndarray], np.ndarray]


def _crop(fraction: float, where: str) -> Transform:
    def crop(image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        ch, cw = max(1, int(h * fraction)), max(1, int(w * fraction))
        top = {"t": 0, "b": h - ch, "c": (h - ch) // 2}[where[0]]
        left = {"l": 0, "r": w - cw, "c": (w - cw) // 2}[where[-1]]
        return image[top:top + ch, left:left + cw]
    return crop


def _scale(factor: float) -> Transform:
    def scale(image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        return cv2.resize(image, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_AREA)
    return scale


def _rotate(degrees: float) -> Transform:
    def rotate(image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
        return cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    return rotate


def _levels(gain: float, offset: float) -> Transform:
    def levels(image: np.ndarray) -> np.ndarray:
        return np.clip((image.astype(np.float32) - 127.5) * gain + 127.5 + offset, 0, 255).astype(np.uint8)
    return levels


def _gamma(gamma: float) -> Transform:
    table = np.clip(255.0 * (np.arange(256) / 255.0) ** gamma + 0.5, 0, 255).astype(np.uint8)
    return lambda image: cv2.LUT(image, table)


def _jpeg(quality: int) -> Transform:
    def jpeg(image: np.ndarray) -> np.ndarray:
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        return cv2.imdecode(data, cv2.IMREAD_COLOR) if ok else image
    return jpeg


def _blur(size: int) -> Transform:
    return lambda image: cv2.GaussianBlur(image, (size, size), 0)


def _noise(sigma: float, seed: int) -> Transform:
    def noise(image: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return np.clip(image + rng.normal(0, sigma, image.shape), 0, 255).astype(np.uint8)
    return noise


def _table() -> list[tuple[str, Transform]]:
    corners = ("tl", "tr", "bl", "br", "c")
    table: list[tuple[str, Transform]] = [("orig", lambda image: image)]
    table += [(f"crop80-{c}", _crop(0.8, c)) for c in corners]
    table += [(f"crop65-{c}", _crop(0.65, c)) for c in corners]
    table += [("crop90-c", _crop(0.9, "c")), ("crop50-c", _crop(0.5, "c"))]
    table += [(f"scale{f:g}", _scale(f)) for f in (0.5, 0.35, 0.25)]
    table += [(f"rot{d:+d}", _rotate(d)) for d in (-10, -6, -3, 3, 6, 10)]
    table += [(f"bright{o:+d}", _levels(1.0, o)) for o in (-40, -20, 20, 40)]
    table += [(f"contrast{g:g}", _levels(g, 0.0)) for g in (0.6, 0.8, 1.2, 1.4)]
    table += [(f"gamma{g:g}", _gamma(g)) for g in (0.7, 1.4)]
    table += [(f"jpeg{q}", _jpeg(q)) for q in (10, 20, 35, 50, 70, 90)]
    table += [(f"blur{k}", _blur(k)) for k in (3, 5)]
    table += [(f"noise{s}", _noise(s, seed)) for seed, s in enumerate((4, 8))]
    return table


TRANSFORMS: tuple[tuple[str, Transform], ...] = tuple(_table())
#: views per photo with augmentation: every transform on the photo and on its mirror
VIEWS_PER_PHOTO = 2 * len(TRANSFORMS)


def view_names() -> list[str]:
    """The names of the views, in the order :func:`augmented_views` yields them."""
    names = [name for name, _ in TRANSFORMS]
    return names + [f"flip+{name}" for name in names]


def augmented_views(image: np.ndarray) -> Iterator[tuple[str, np.ndarray]]:
    """(name, view) for every documented view of one decoded photo (HxWx3 uint8), in a fixed order."""
    for mirror, source in (("", image), ("flip+", cv2.flip(image, 1))):
        for name, transform in TRANSFORMS:
            yield mirror + name, np.ascontiguousarray(transform(source))
