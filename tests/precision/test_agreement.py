"""Agreement statistics on constructed cases (values checked by hand or against the textbook formula)."""
from __future__ import annotations

import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from vggedge.precision.agreement import (content_hash, kl_divergence, log_margins, margins, measure, set_hash,
                                         shared_images, wilson_interval)

CALIB = Path(__file__).resolve().parents[2] / "calib"


@pytest.mark.parametrize("k, n, low, high", [
    (0, 10, 0.0, 0.2775),       # textbook values of the Wilson score interval, z = 1.96
    (5, 10, 0.2366, 0.7634),
    (10, 10, 0.7225, 1.0),
    (500, 500, 0.99239, 1.0),
    (495, 500, 0.97681, 0.99575),
])
def test_wilson_interval_known_values(k: int, n: int, low: float, high: float) -> None:
    got = wilson_interval(k, n)
    assert got == pytest.approx((low, high), abs=1e-4)


def test_wilson_interval_matches_formula_and_refuses_nonsense() -> None:
    z, k, n = 1.959963984540054, 83, 84
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert wilson_interval(k, n) == pytest.approx((centre - half, centre + half))
    with pytest.raises(ValueError, match="at least one trial"):
        wilson_interval(0, 0)
    with pytest.raises(ValueError, match="outside 0..3"):
        wilson_interval(4, 3)


def test_kl_and_margins() -> None:
    p = np.array([[0.5, 0.5], [0.9, 0.1]])
    assert kl_divergence(p, p) == pytest.approx([0.0, 0.0], abs=1e-9)
    q = np.array([[0.25, 0.75], [0.9, 0.1]])
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert kl_divergence(p, q) == pytest.approx([expected, 0.0], abs=1e-9)
    logits = np.log(p)  # softmax(log p) == p
    assert kl_divergence(logits, np.log(q), "logits") == pytest.approx([expected, 0.0], abs=1e-9)
    assert margins(np.array([[1.0, 3.0, 2.5]])) == pytest.approx([0.5])


def test_measure_flips_and_per_class() -> None:
    ref = np.eye(3)[[0, 0, 1, 2, 2]] + 0.01
    out = ref.copy()
    out[1] = [0.1, 0.8, 0.1]  # view "v1" flips from class 0 to class 1
    stats = measure(ref, out, [f"v{i}" for i in range(5)])
    assert (stats.views, stats.agree, stats.top1) == (5, 4, 0.8)
    assert [(f.view, f.ref_top1, f.out_top1) for f in stats.flips] == [("v1", 0, 1)]
    assert stats.flips[0].ref_margin == pytest.approx(1.0) and stats.flips[0].out_margin == pytest.approx(0.7)
    assert [(c.index, c.views, c.agree) for c in stats.per_class] == [(0, 2, 1), (1, 1, 1), (2, 2, 2)]
    assert measure(ref, out, list("abcde"), few_classes=2).per_class == ()  # many classes: no per-class list
    with pytest.raises(ValueError, match="4 view names for 5 views"):
        measure(ref, out, list("abcd"))


def test_shared_images_by_content(tmp_path: Path) -> None:
    a, b = sorted(CALIB.glob("*.jpg"))[:2]
    shutil.copy(a, tmp_path / "copy.jpg")
    cv2.imwrite(str(tmp_path / "lossless.png"), cv2.imread(str(b)))
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    assert content_hash(tmp_path / "copy.jpg") == content_hash(a)
    pairs = shared_images(sorted(tmp_path.iterdir()), [a, b])
    assert pairs == [(tmp_path / "copy.jpg", a), (tmp_path / "lossless.png", b)]
    assert set_hash([a, b]) == set_hash([tmp_path / "lossless.png", tmp_path / "copy.jpg"])
    assert set_hash([a]) != set_hash([a, b])


def test_near_ties_are_counted_and_their_flips_too() -> None:
    ref = np.array([[0.50, 0.49, 0.01], [0.40, 0.39, 0.21], [0.9, 0.05, 0.05], [0.6, 0.3, 0.1]])
    out = np.array([[0.49, 0.50, 0.01], [0.40, 0.39, 0.21], [0.05, 0.9, 0.05], [0.6, 0.3, 0.1]])
    stats = measure(ref, out, list("abcd"))
    # near-ties: runner-up within 5% of the top-1 (log ratio < 0.05): views a (0.49/0.50) and b (0.39/0.40)
    assert (stats.near_ties, stats.near_tie_flips) == (2, 1)  # a flipped; c flipped but was no tie
    assert len(stats.flips) == 2
    assert measure(np.log(ref), np.log(out), list("abcd"), output_kind="logits").near_ties == 2
    assert log_margins(ref, "probabilities") == pytest.approx(np.log([0.50 / 0.49, 0.40 / 0.39, 0.9 / 0.05, 2.0]))
