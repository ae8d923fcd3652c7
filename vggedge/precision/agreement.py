"""How far a quantized model's answers drift from the reference's: pure statistics on output arrays.

Everything here takes ``(views, classes)`` arrays (the reference's and the
variant's outputs for the same views, in the same order) and is tested on
constructed cases; `vggedge compare`, `vggedge build` and mixed precision use it.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

#: z for a two-sided 95% interval
Z95 = 1.959963984540054
#: per-class agreement is listed only for models with at most this many classes
FEW_CLASSES = 20
#: a view is a near-tie when its runner-up's log-score is within this of the top-1 (runner-up >= 95% of it)
NEAR_TIE = 0.05


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval (fractions 0-1) for ``successes`` out of ``trials``.

    Unlike the normal approximation it stays inside [0, 1] and is not empty at
    100%: 500 agreeing views out of 500 gives (0.9924, 1.0).
    """
    if trials <= 0:
        raise ValueError("wilson_interval needs at least one trial")
    if not 0 <= successes <= trials:
        raise ValueError(f"successes {successes} outside 0..{trials}")
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def as_probabilities(outputs: np.ndarray, output_kind: str) -> np.ndarray:
    """Rows as probability distributions: softmax of logits, renormalised probabilities otherwise."""
    x = np.asarray(outputs, dtype=np.float64)
    if output_kind == "logits":
        x = np.exp(x - x.max(axis=1, keepdims=True))
    else:
        x = np.clip(x, 0.0, None)
    return x / np.maximum(x.sum(axis=1, keepdims=True), 1e-300)


def kl_divergence(ref: np.ndarray, out: np.ndarray, output_kind: str = "probabilities",
                  eps: float = 1e-12) -> np.ndarray:
    """KL(ref || out) per row, in nats (0 when the distributions are equal)."""
    p = as_probabilities(ref, output_kind)
    q = as_probabilities(out, output_kind)
    return np.sum(p * (np.log(p + eps) - np.log(q + eps)), axis=1)


def log_scores(outputs: np.ndarray, output_kind: str) -> np.ndarray:
    """Logits as they are; probabilities as log-probabilities (the same gaps as the logits behind them)."""
    x = np.asarray(outputs, dtype=np.float64)
    return x if output_kind == "logits" else np.log(np.clip(x, 1e-30, None))


def log_margins(outputs: np.ndarray, output_kind: str) -> np.ndarray:
    """Top-1 minus runner-up log-score per view (for probabilities: the log of their ratio)."""
    part = np.sort(log_scores(outputs, output_kind), axis=1)
    return part[:, -1] - part[:, -2]


def margins(outputs: np.ndarray) -> np.ndarray:
    """Top-1 score minus top-2 score per row (how close each answer was to flipping)."""
    part = np.sort(np.asarray(outputs, dtype=np.float64), axis=1)
    return part[:, -1] - part[:, -2] if part.shape[1] > 1 else part[:, -1]


@dataclass(frozen=True)
class Flip:
    """One view whose top-1 answer differs between the reference and the variant."""

    view: str
    ref_top1: int
    ref_margin: float
    out_top1: int
    out_margin: float


@dataclass(frozen=True)
class ClassAgreement:
    """Agreement among the views the reference puts in one class."""

    index: int
    label: str
    views: int
    agree: int


@dataclass(frozen=True)
class Agreement:
    """Top-1 agreement with its 95% Wilson interval, the flips, KL divergence and per-class counts."""

    views: int
    agree: int
    low: float
    high: float
    kl_mean: float
    kl_max: float
    flips: tuple[Flip, ...]
    per_class: tuple[ClassAgreement, ...]
    #: reference views whose runner-up is within NEAR_TIE (log-score) of the top-1, and how many of them flipped:
    #: they flip under almost any perturbation, so they bound the agreement any quantization can reach
    near_ties: int = 0
    near_tie_flips: int = 0

    @property
    def top1(self) -> float:
        return self.agree / self.views


def measure(ref: np.ndarray, out: np.ndarray, names: Sequence[str], *, output_kind: str = "probabilities",
            labels: Sequence[str] | None = None, few_classes: int = FEW_CLASSES) -> Agreement:
    """Compare two ``(views, classes)`` output arrays; ``names`` names each view (for the flip list)."""
    ref, out = np.asarray(ref), np.asarray(out)
    if ref.shape != out.shape or ref.ndim != 2:
        raise ValueError(f"outputs must be two (views, classes) arrays of one shape; got {ref.shape} and {out.shape}")
    if len(names) != ref.shape[0]:
        raise ValueError(f"{len(names)} view names for {ref.shape[0]} views")
    top_ref, top_out = ref.argmax(axis=1), out.argmax(axis=1)
    same = top_ref == top_out
    m_ref, m_out = margins(ref), margins(out)
    flips = tuple(Flip(names[i], int(top_ref[i]), float(m_ref[i]), int(top_out[i]), float(m_out[i]))
                  for i in np.flatnonzero(~same))
    per_class: tuple[ClassAgreement, ...] = ()
    if ref.shape[1] <= few_classes:
        per_class = tuple(ClassAgreement(c, labels[c] if labels else str(c), int(np.sum(top_ref == c)),
                                         int(np.sum(same & (top_ref == c))))
                          for c in range(ref.shape[1]) if np.any(top_ref == c))
    kl = kl_divergence(ref, out, output_kind)
    low, high = wilson_interval(int(same.sum()), len(same))
    ties = log_margins(ref, output_kind) < NEAR_TIE
    return Agreement(len(same), int(same.sum()), low, high, float(kl.mean()), float(kl.max()), flips, per_class,
                     int(ties.sum()), int((ties & ~same).sum()))


def content_hash(path: str | Path) -> str:
    """sha256 of an image file's decoded pixels, so a re-saved copy under another name still matches.

    Files that do not decode are hashed by their bytes.
    """
    import os
    import stat

    import cv2

    from ..image_header import image_size
    from ..preprocess import MAX_DECODE_PIXELS

    if not stat.S_ISREG(os.stat(path).st_mode):  # a pipe or device: never read (reported when classified)
        return hashlib.sha256(b"special:" + os.fsencode(str(path))).hexdigest()
    data = Path(path).read_bytes()
    size = image_size(data) if data else None
    try:
        decodable = bool(data) and not (size and size[0] * size[1] > MAX_DECODE_PIXELS)
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if decodable else None
    except cv2.error:  # the decoder's own limits: hashed by bytes, reported when classified
        pixels = None
    digest = hashlib.sha256()
    if pixels is None:
        digest.update(b"bytes:" + data)
    else:
        digest.update(f"{pixels.shape}".encode() + pixels.tobytes())
    return digest.hexdigest()


def shared_images(evaluation: Sequence[str | Path], calibration: Sequence[str | Path]) -> list[tuple[Path, Path]]:
    """(evaluation file, calibration file) pairs with the same content; empty when the sets are disjoint."""
    seen = {content_hash(p): Path(p) for p in calibration}
    pairs = []
    for path in evaluation:
        match = seen.get(content_hash(path))
        if match is not None:
            pairs.append((Path(path), match))
    return pairs


def set_hash(paths: Sequence[str | Path]) -> str:
    """One sha256 over the (sorted) content hashes of a set of images, independent of names and order."""
    digest = hashlib.sha256()
    for h in sorted(content_hash(p) for p in paths):
        digest.update(h.encode())
    return digest.hexdigest()
