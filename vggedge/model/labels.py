"""Class names for model outputs and top-k decoding of score arrays.

The 1000 ImageNet (ILSVRC-2012) names ship as package data in
``vggedge/data/imagenet_classes.txt`` (see ``vggedge/data/LICENSES.md``).
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from vggedge.errors import ConfigError, InputError, ModelError

IMAGENET_NUM_CLASSES = 1000
_DATA_PACKAGE = "vggedge.data"
_DATA_FILE = "imagenet_classes.txt"


@functools.lru_cache(maxsize=1)
def imagenet_labels() -> tuple[str, ...]:
    """Return the 1000 ImageNet class names in ILSVRC-2012 index order (cached).

    Raises:
        ModelError: the data file is missing, unreadable or not 1000 names long.
    """
    where = f"{_DATA_PACKAGE.replace('.', '/')}/{_DATA_FILE}"
    try:
        text = resources.files(_DATA_PACKAGE).joinpath(_DATA_FILE).read_text(encoding="utf-8")
    except (OSError, ModuleNotFoundError, UnicodeDecodeError) as exc:
        raise ModelError(
            f"ImageNet label file {where} is missing or unreadable ({exc}); "
            "reinstall vggedge so its package data is present"
        ) from exc
    names = _non_empty_lines(text)
    if len(names) != IMAGENET_NUM_CLASSES:
        raise ModelError(
            f"ImageNet label file {where} has {len(names)} non-empty lines, "
            f"expected {IMAGENET_NUM_CLASSES}; reinstall vggedge"
        )
    return names


def labels_for(name: str | None, num_classes: int | None) -> tuple[str, ...]:
    """Resolve a label-set choice to one name per model output class.

    Args:
        name: ``"imagenet"`` for the 1000 ImageNet names, ``None`` for generic
            ``class_0 ... class_{n-1}``, or the path of a UTF-8 text file with
            one class name per non-empty line.
        num_classes: the model's number of output classes; ``None`` skips the
            count check (it is required when ``name`` is ``None``).

    Raises:
        ConfigError: the label set does not fit ``num_classes``, or the label
            file is missing, unreadable or empty.
        ModelError: the shipped ImageNet label file is broken.
    """
    if name is None:
        if num_classes is None or num_classes < 1:
            raise ConfigError(
                f"generic labels need a positive num_classes, got {num_classes!r}"
            )
        return tuple(f"class_{i}" for i in range(num_classes))
    if name == "imagenet":
        if num_classes is not None and num_classes != IMAGENET_NUM_CLASSES:
            raise ConfigError(
                f"labels 'imagenet' have {IMAGENET_NUM_CLASSES} classes but the model "
                f"has {num_classes}; pass a label file with {num_classes} lines or no labels"
            )
        return imagenet_labels()
    path = Path(name)
    if not path.is_file():
        raise ConfigError(
            f"label file {path} does not exist; expected 'imagenet', no labels, "
            "or a text file with one class name per line"
        )
    try:
        names = _non_empty_lines(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"label file {path} is unreadable: {exc}") from exc
    if not names:
        raise ConfigError(f"label file {path} has no class names (no non-empty lines)")
    if num_classes is not None and len(names) != num_classes:
        raise ConfigError(
            f"label file {path} has {len(names)} class names but the model "
            f"has {num_classes} classes"
        )
    return names


@dataclass(frozen=True)
class Prediction:
    """One ranked class: its output index, its name and its score."""

    index: int
    label: str
    score: float


def top_k(scores: np.ndarray, labels: Sequence[str], k: int) -> list[list[Prediction]]:
    """Return the ``k`` best classes of each row of ``scores``, best first.

    Args:
        scores: ``(N, C)`` scores or probabilities; a 1-D ``(C,)`` array is one row.
        labels: ``C`` class names.
        k: how many classes per row; values above ``C`` are clamped to ``C``.

    Ties are broken by the lower class index (stable sort).

    Raises:
        InputError: ``k < 1``, ``scores`` is not 1-D/2-D or has no classes, or
            its class count differs from ``len(labels)``.
    """
    if k < 1:
        raise InputError(f"top-k needs k >= 1, got k={k}")
    arr = np.asarray(scores)
    if arr.ndim == 1:
        arr = arr[np.newaxis, :]
    if arr.ndim != 2:
        raise InputError(
            f"scores must have shape (N, C) or (C,), got shape {tuple(np.shape(scores))}"
        )
    num_classes = arr.shape[1]
    if num_classes != len(labels):
        raise InputError(
            f"scores have {num_classes} classes but {len(labels)} labels were given"
        )
    if num_classes == 0:
        raise InputError("scores have 0 classes; expected at least 1")
    k = min(k, num_classes)
    values = arr.astype(np.float64, copy=False)
    order = np.argsort(-values, axis=1, kind="stable")[:, :k]
    return [
        [Prediction(index=int(i), label=labels[int(i)], score=float(row[i])) for i in idx]
        for row, idx in zip(values, order)
    ]


def _non_empty_lines(text: str) -> tuple[str, ...]:
    """Return the stripped, non-empty lines of ``text``."""
    return tuple(line.strip() for line in text.splitlines() if line.strip())
