"""Calibration on augmented views: a fixed, documented subset of `compare --augment`'s views per photo.

``count`` views of each calibration photo are taken from the 84-view table of
:mod:`vggedge.precision.views` (photo and mirror image, crops, scales, rotations,
levels, JPEG, blur, noise), evenly spaced over it: view ``i * 84 // count`` for
``i < count``. The first is always the photo itself; with an even count the
mirror image is the second half's first view. For 12 views per photo:
``orig, crop65-tr, scale0.35, rot+10, contrast1.2, jpeg50`` and the same six
of the mirror image
(see :func:`chosen_views`). Deterministic: no random state.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ConfigError


def _views():
    from . import views  # the one table of views, shared with `compare --augment`

    return views


def view_indices(count: int) -> list[int]:
    """Positions in the 84-view table of the ``count`` views calibration uses per photo."""
    total = _views().VIEWS_PER_PHOTO
    if not 1 <= count <= total:
        raise ConfigError(f"calibration views per photo must be between 1 and {total}, got {count}")
    return [i * total // count for i in range(count)]


def chosen_views(count: int) -> list[str]:
    """The names of the views calibration uses per photo (``orig``, ``flip+...``), in order."""
    names = _views().view_names()
    return [names[i] for i in view_indices(count)]


def photo_views(image: np.ndarray, count: int) -> list[np.ndarray]:
    """The chosen views of one decoded photo (HxWx3 uint8 BGR), computed without the other views."""
    import cv2

    views = _views()
    transforms = len(views.TRANSFORMS)
    out = []
    for index in view_indices(count):
        source = cv2.flip(image, 1) if index >= transforms else image
        out.append(np.ascontiguousarray(views.TRANSFORMS[index % transforms][1](source)))
    return out


class PhotoViews:
    """The chosen views of the last photo asked for (a reader asks for one photo's views in a row)."""

    def __init__(self, count: int) -> None:
        self.count, self.path, self.views = count, None, []

    def view(self, path: Path, index: int) -> np.ndarray:
        """View number ``index`` (0..count-1) of the photo at ``path``."""
        from ..preprocess import read_image

        if path != self.path:
            self.path, self.views = path, photo_views(read_image(path), self.count)
        return self.views[index]
