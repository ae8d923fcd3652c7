"""Latency statistics (pure functions, tested on known inputs)."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

PERCENTILES = (90, 95, 99)
UNSTABLE_CV = 0.05  # a coefficient of variation above 5% is reported as an unstable run


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between order statistics."""
    if len(samples) == 0:
        raise ValueError("percentile of no samples")
    return float(np.percentile(np.asarray(samples, dtype=np.float64), q, method="linear"))


def coefficient_of_variation(samples: Sequence[float]) -> float:
    """Sample standard deviation over the mean (0 for fewer than two samples)."""
    values = np.asarray(samples, dtype=np.float64)
    if values.size < 2 or values.mean() == 0:
        return 0.0
    return float(values.std(ddof=1) / values.mean())


def summarize(samples: Sequence[float]) -> dict[str, float]:
    """min / mean / median / p90 / p95 / p99 / max / std / cv of a list of durations."""
    values = np.asarray(samples, dtype=np.float64)
    if values.size == 0:
        raise ValueError("summarize() needs at least one sample")
    out = {"count": float(values.size), "min": float(values.min()), "mean": float(values.mean()),
           "median": percentile(values, 50)}
    out.update({f"p{q}": percentile(values, q) for q in PERCENTILES})
    out.update({"max": float(values.max()), "std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
                "cv": coefficient_of_variation(values)})
    return out


def throughput(batch: int, seconds: Sequence[float]) -> float:
    """Images per second from per-iteration durations of ``batch`` images (median-based)."""
    median = percentile(seconds, 50)
    return batch / median if median > 0 else math.inf
