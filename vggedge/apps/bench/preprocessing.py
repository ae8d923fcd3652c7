"""OpenCV preprocessing cost: one 1920x1080 frame, and a batch of 32, single- and multi-threaded."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

import cv2
import numpy as np

from ...preprocess import preprocess
from ...spec import ModelSpec
from .stats import summarize


@dataclass
class PreprocessResult:
    """Median milliseconds for one configuration."""

    case: str
    threads: int
    median_ms: float
    frames_per_s: float


def synthetic_frame(height: int = 1080, width: int = 1920, seed: int = 0) -> np.ndarray:
    """A deterministic camera-like BGR frame (smooth gradients plus noise, not zeros)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([x / width * 255, y / height * 255, (x + y) / (width + height) * 255], axis=2)
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def _time(fn, repeats: int) -> float:
    fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return summarize(samples)["median"]


def bench_preprocess(spec: ModelSpec | None = None, *, batch: int = 32, threads: int | None = None,
                     repeats: int = 20) -> list[PreprocessResult]:
    """Per-frame and per-batch preprocessing time of 1920x1080 frames, 1 thread vs ``threads``."""
    spec = spec or ModelSpec()
    threads = threads or os.cpu_count() or 1
    frame = synthetic_frame()
    frames = [synthetic_frame(seed=i) for i in range(batch)]
    out = np.empty((batch, *spec.input_shape[1:]), dtype=np.dtype(spec.dtype))
    results = []
    previous = cv2.getNumThreads()
    try:
        for n in sorted({1, threads}):
            cv2.setNumThreads(n)
            one = _time(lambda: preprocess([frame], spec), repeats)
            many = _time(lambda: preprocess(frames, spec, threads=n, out=out), max(3, repeats // 4))
            results.append(PreprocessResult("1 frame 1920x1080", n, 1000 * one, 1 / one))
            results.append(PreprocessResult(f"batch of {batch}", n, 1000 * many, batch / many))
    finally:
        cv2.setNumThreads(previous)
    return results
