"""Counters, per-stage latency percentiles and temporal smoothing for ``vggedge stream``."""
from __future__ import annotations

import collections
import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np

from ...video.stages import STAGES


def percentiles(values: Iterable[float], qs: tuple[float, ...] = (50, 95, 99)) -> dict[str, float]:
    """{"p50": ..., "p95": ..., "p99": ...} in seconds (empty dict without values)."""
    data = np.fromiter(values, dtype=np.float64)
    if data.size == 0:
        return {}
    return {f"p{q:g}": float(np.percentile(data, q)) for q in qs}


@dataclass
class SourceCounts:
    """Per-source numbers for the summary and /metrics."""

    uri: str
    frames: int = 0
    classified: int = 0
    dropped: int = 0
    skipped: int = 0
    corrupt: int = 0
    reconnects: int = 0
    stalls: int = 0
    connected: bool = True


class StreamStats:
    """Thread-safe record of the stream: counts and the last ``window`` latencies per stage."""

    def __init__(self, uris: list[str], window: int = 20000) -> None:
        self._lock = threading.Lock()
        self.sources = [SourceCounts(uri) for uri in uris]
        self.latency: dict[str, collections.deque] = {s: collections.deque(maxlen=window) for s in STAGES}
        self.classified = 0
        self.batches = 0
        self.started = time.monotonic()
        self.finished: float | None = None
        self._recent: collections.deque = collections.deque(maxlen=256)  # result times for the live FPS
        #: called before each summary to refresh per-source counts (set by the stream)
        self.refresh: Callable[[], None] | None = None

    def record(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.latency[stage].append(seconds)

    def classified_frame(self, source: int, e2e: float, wait: float) -> None:
        now = time.monotonic()
        with self._lock:
            self.classified += 1
            self.sources[source].classified += 1
            self.latency["e2e"].append(e2e)
            self.latency["wait"].append(wait)
            self._recent.append((now, source))

    def batch(self, times: dict[str, float]) -> None:
        with self._lock:
            self.batches += 1
            for stage in ("prepare", "infer"):
                if stage in times:
                    self.latency[stage].append(times[stage])

    def update_source(self, source: int, **counts: Any) -> None:
        with self._lock:
            for key, value in counts.items():
                setattr(self.sources[source], key, value)

    def fps(self, source: int | None = None, window_s: float = 2.0) -> float:
        """Classified frames per second over the last ``window_s`` seconds (one source or all)."""
        now = time.monotonic()
        with self._lock:
            times = [t for t, s in self._recent if now - t <= window_s and (source is None or s == source)]
        if len(times) < 2:
            return 0.0
        span = max(now - times[0], 1e-6)
        return (len(times) - 1) / span if span < window_s else len(times) / window_s

    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    def summary(self) -> dict[str, Any]:
        """Totals, FPS and p50/p95/p99 per stage in milliseconds."""
        if self.refresh is not None:
            self.refresh()
        with self._lock:
            lat = {s: {k: v * 1000.0 for k, v in percentiles(d).items()} for s, d in self.latency.items() if d}
            per_source = [vars(s).copy() for s in self.sources]
        elapsed = self.elapsed()
        return {
            "frames": sum(s["frames"] for s in per_source),
            "classified": self.classified,
            "dropped": sum(s["dropped"] for s in per_source),
            "corrupt": sum(s["corrupt"] for s in per_source),
            "reconnects": sum(s["reconnects"] for s in per_source),
            "batches": self.batches,
            "seconds": elapsed,
            "fps": self.classified / elapsed if elapsed > 0 else 0.0,
            "latency_ms": lat,
            "sources": per_source,
        }


def format_summary(summary: dict[str, Any]) -> str:
    """The summary printed when a stream stops."""
    lines = [f"stream: {summary['frames']} frames read, {summary['classified']} classified in "
             f"{summary['batches']} batches, {summary['dropped']} dropped (latest-frame policy), "
             f"{summary['corrupt']} corrupt, {summary['reconnects']} reconnects; "
             f"{summary['fps']:.1f} classified frames/s over {summary['seconds']:.1f} s"]
    for i, s in enumerate(summary["sources"]):
        lines.append(f"  source {i} {s['uri']}: {s['frames']} frames, {s['classified']} classified, "
                     f"{s['dropped']} dropped, {s['corrupt']} corrupt, {s['reconnects']} reconnects")
    lines.append("  latency ms        p50       p95       p99")
    for stage in STAGES:
        p = summary["latency_ms"].get(stage)
        if p:
            lines.append(f"  {stage:<12} {p['p50']:9.2f} {p['p95']:9.2f} {p['p99']:9.2f}")
    return "\n".join(lines)


class ScoreSmoother:
    """Exponential moving average of class scores per source, with time constant ``tau`` seconds.

    For a frame ``dt`` seconds (media time) after the previous one, the smoothed
    scores become ``s = a * x + (1 - a) * s`` with ``a = 1 - exp(-dt / tau)``: a
    change in the scene reaches 63% of its weight after ``tau`` seconds whatever
    the frame rate. ``tau = 0`` turns smoothing off.
    """

    def __init__(self, tau: float = 0.0) -> None:
        if tau < 0 or not math.isfinite(tau):
            from ...errors import ConfigError

            raise ConfigError(f"smoothing time constant {tau!r}: expected seconds >= 0")
        self.tau = tau
        self._state: dict[int, tuple[float, np.ndarray]] = {}

    def update(self, source: int, pts: float, scores: np.ndarray) -> np.ndarray:
        """The smoothed scores of ``source`` after a frame at media time ``pts``."""
        scores = np.asarray(scores, dtype=np.float32)
        if self.tau <= 0:
            return scores
        previous = self._state.get(source)
        if previous is None:
            smoothed = scores.copy()
        else:
            last_pts, state = previous
            alpha = 1.0 - math.exp(-max(pts - last_pts, 0.0) / self.tau)
            smoothed = (alpha * scores + (1.0 - alpha) * state).astype(np.float32)
        self._state[source] = (pts, smoothed)
        return smoothed
