"""`vggedge bench`: latency and throughput of any backend and precision, trtexec-style.

Each iteration preprocesses a batch of already decoded frames (decoding is not
timed) and runs it. Reported per batch size: model throughput (batch / median
inference time), end-to-end throughput (preprocessing included), latency
percentiles, and the GPU's host-to-device / compute / device-to-host split where
the runner records it. The environment is recorded beside the numbers.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ConfigError, ImageError
from ..paths import CALIB_DIR
from ..preprocess import list_images, preprocess, read_image
from ..runtime.base import RunnerOptions
from ..runtime.select import select_runner
from ..spec import ModelSpec, load_spec_for
from .info import machine, versions
from .stats import UNSTABLE_CV, summarize

log = logging.getLogger(__name__)
STAGES = ("preprocess", "infer", "end_to_end", "h2d", "compute", "d2h")


@dataclass
class BatchResult:
    """Every iteration's timings (seconds) for one batch size, and their summaries."""

    batch: int
    iterations: int = 0
    times: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})
    summary: dict[str, dict[str, float]] = field(default_factory=dict)
    model_throughput: float = 0.0
    end_to_end_throughput: float = 0.0
    unstable: bool = False

    def finish(self) -> None:
        """Summaries and throughputs from the recorded times."""
        self.summary = {stage: summarize(values) for stage, values in self.times.items() if values}
        self.model_throughput = self.batch / self.summary["infer"]["median"]
        self.end_to_end_throughput = self.batch / self.summary["end_to_end"]["median"]
        self.unstable = self.summary["infer"]["cv"] > UNSTABLE_CV


@dataclass
class BenchReport:
    """Results per batch size plus the environment they were measured in."""

    model: str
    backend: str
    precision: str
    environment: dict
    settings: dict
    results: list[BatchResult] = field(default_factory=list)

    def to_dict(self, iterations: bool = True) -> dict:
        data = asdict(self)
        if not iterations:
            for result in data["results"]:
                result.pop("times")
        return data

    def write_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1, default=repr))  # runner options as their repr
        return path


def parse_batches(text: str) -> tuple[int, ...]:
    """``1,8,32`` -> (1, 8, 32); ``1-32`` -> powers of two from 1 to 32."""
    try:
        if "-" in text:
            lo, hi = (int(v) for v in text.split("-"))
            sizes, b = [], lo
            while b <= hi:
                sizes.append(b)
                b *= 2
            out = tuple(sizes)
        else:
            out = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"batch sizes {text!r}: expected a list like 1,8,32 or a sweep like 1-32") from None
    if not out or min(out) < 1:
        raise ConfigError(f"batch sizes {text!r}: expected positive integers")
    return out


def load_frames(images: str | Path | Sequence[str | Path] | None) -> list[np.ndarray]:
    """Decoded BGR frames to feed the benchmark (default: the repository's calib/ photos)."""
    paths = list_images(images or CALIB_DIR) if not isinstance(images, (list, tuple)) else list(images)
    if not paths:
        raise ImageError(f"{images or CALIB_DIR}: no images to benchmark with")
    return [read_image(p) for p in paths]


def environment(runner, spec: ModelSpec, settings: dict) -> dict:
    """CPU, GPU, versions, threads and precision, recorded next to the numbers."""
    env = {"machine": machine(), "packages": {k: v for k, v in versions().items() if v},
           "runner": runner.describe(), "precision": spec.precision, "cpu_count": os.cpu_count()}
    env["runner_options"] = settings["runner_options"]
    return env


def _iteration(runner, spec: ModelSpec, frames: list[np.ndarray], result: BatchResult | None) -> None:
    t0 = time.perf_counter()
    batch = preprocess(frames, spec)
    t1 = time.perf_counter()
    runner.infer({spec.input_name: batch})
    t2 = time.perf_counter()
    if result is None:
        return
    for stage, value in (("preprocess", t1 - t0), ("infer", t2 - t1), ("end_to_end", t2 - t0)):
        result.times[stage].append(value)
    for stage in ("h2d", "compute", "d2h"):  # GPU runners report their copy/compute split (seconds)
        if stage in runner.last_times:
            result.times[stage].append(runner.last_times[stage])
    result.iterations += 1


def bench_batch(runner, spec: ModelSpec, frames: list[np.ndarray], batch: int, *, warmup_s: float,
                duration_s: float, min_iters: int, progress: bool = False) -> BatchResult:
    """Warm up for ``warmup_s``, then time for ``duration_s`` and at least ``min_iters`` iterations."""
    from tqdm import tqdm

    chosen = [frames[i % len(frames)] for i in range(batch)]
    result = BatchResult(batch)
    start = time.perf_counter()
    while True:
        _iteration(runner, spec, chosen, None)
        if time.perf_counter() - start >= warmup_s:
            break
    start = time.perf_counter()
    with tqdm(total=min_iters, desc=f"batch {batch}", unit="it", disable=not progress, leave=False) as bar:
        while result.iterations < min_iters or time.perf_counter() - start < duration_s:
            _iteration(runner, spec, chosen, result)
            bar.update(1)
    result.finish()
    if result.unstable:
        log.warning("batch %d: unstable run, inference time varies by %.1f%% (coefficient of variation); "
                    "close other programs or raise --duration", batch, 100 * result.summary["infer"]["cv"])
    return result


def bench(model: str | Path, backend: str = "auto", batches: Sequence[int] = (1, 8), *, warmup_s: float = 1.0,
          duration_s: float = 3.0, min_iters: int = 10, images=None, progress: bool = True,
          options: RunnerOptions | None = None) -> BenchReport:
    """Benchmark a model (ONNX with spec, or engine) on one backend over several batch sizes."""
    if warmup_s < 0 or duration_s <= 0 or min_iters < 1:
        raise ConfigError(f"need warmup >= 0, duration > 0 and min_iters >= 1; got {warmup_s}, {duration_s}, {min_iters}")
    spec = load_spec_for(model)
    fixed = spec.fixed_batch
    if fixed and any(b != fixed for b in batches):
        raise ConfigError(f"{model} has a fixed batch of {fixed}; benchmark it with --batch {fixed}")
    frames = load_frames(images)
    options = dataclasses.replace(options or RunnerOptions(), max_batch=max(batches))
    selection = select_runner(model, backend, options=options)
    settings = {"warmup_s": warmup_s, "duration_s": duration_s, "min_iters": min_iters, "batches": list(batches),
                "runner_options": dataclasses.asdict(options), "frames": len(frames),
                "timed": "preprocess (decoded frames -> tensor) and inference incl. host<->device copies"}
    with selection.runner as runner:
        report = BenchReport(str(model), selection.backend, spec.precision, environment(runner, spec, settings), settings)
        for batch in batches:
            report.results.append(bench_batch(runner, spec, frames, batch, warmup_s=warmup_s,
                                              duration_s=duration_s, min_iters=min_iters, progress=progress))
    return report


def format_report(report: BenchReport) -> str:
    """A trtexec-like table: throughput and latency percentiles per batch size, in milliseconds."""
    env = report.environment
    lines = [f"model {report.model} | backend {env['runner']} | precision {report.precision} | "
             f"cpu {env['machine']['cpu']} x{env['cpu_count']}",
             f"{'batch':>5} {'img/s':>8} {'e2e img/s':>10} {'stage':>10} {'min':>8} {'mean':>8} {'median':>8}"
             f" {'p90':>8} {'p95':>8} {'p99':>8} {'cv':>6}"]
    for r in report.results:
        for i, (stage, s) in enumerate(r.summary.items()):
            head = f"{r.batch:>5} {r.model_throughput:>8.2f} {r.end_to_end_throughput:>10.2f}" if i == 0 else " " * 25
            lines.append(f"{head} {stage:>10} " + " ".join(f"{1000 * s[k]:>8.2f}" for k in
                         ("min", "mean", "median", "p90", "p95", "p99")) + f" {100 * s['cv']:>5.1f}%")
        if r.unstable:
            lines.append(f"{'':>25} WARNING: unstable (inference cv {100 * r.summary['infer']['cv']:.1f}% > "
                         f"{100 * UNSTABLE_CV:.0f}%)")
    lines.append("times in ms; img/s = batch / median inference; e2e adds OpenCV preprocessing of decoded frames")
    return "\n".join(lines)
