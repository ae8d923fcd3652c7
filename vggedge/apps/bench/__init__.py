"""`vggedge bench`: latency and throughput of any backend and precision, trtexec-style.

Everything runs through ``Runner.run()``, the overlapped path applications use.
Per batch size, two phases are measured side by side in one run:

- inference only: the same preprocessed batch, run after run (``infer`` times,
  and the GPU's host-to-device / compute / device-to-host split where recorded);
  model throughput = batch / median inference time;
- the pipeline: decoded frames preprocessed in the prepare worker while the
  previous batch infers or, with ``end_to_end=True``, image *files* decoded and
  preprocessed there. Its throughput is images over the wall time between the
  first and the last result, and ``ratio`` = pipeline / inference-only throughput.

The environment is recorded beside the numbers.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ...checks import count, seconds
from ...decode_pool import DecodePool, shared_pool
from ...errors import ConfigError, ImageError
from ...env import decoder_wanted
from ...paths import CALIB_DIR
from ...preprocess import list_images, preprocess, read_image, reduced_decode_enabled
from ...runtime.base import BatchOutput, PrepareFn, Runner, RunnerOptions
from ...runtime.device_path import select_decoder
from ...runtime.select import Selection, open_plan, plan_selection
from ...spec import ModelSpec
from ..batches import device_fill
from ..info import machine, versions
from .stats import UNSTABLE_CV, summarize

log = logging.getLogger(__name__)
STAGES = ("preprocess", "infer", "end_to_end", "h2d", "compute", "d2h")


@dataclass
class BatchResult:
    """Every iteration's timings (seconds) for one batch size, and their summaries.

    ``end_to_end`` holds the interval between consecutive pipeline results (the
    steady-state time per batch); ``ratio`` is pipeline / inference-only throughput.
    """

    batch: int
    iterations: int = 0
    times: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})
    summary: dict[str, dict[str, float]] = field(default_factory=dict)
    model_throughput: float = 0.0
    end_to_end_throughput: float = 0.0
    ratio: float = 0.0
    unstable: bool = False

    def finish(self, pipeline_images: int, pipeline_wall_s: float) -> None:
        """Summaries and throughputs from the recorded times."""
        self.summary = {stage: summarize(values) for stage, values in self.times.items() if values}
        self.model_throughput = self.batch / self.summary["infer"]["median"]
        self.end_to_end_throughput = pipeline_images / pipeline_wall_s if pipeline_wall_s > 0 else 0.0
        self.ratio = self.end_to_end_throughput / self.model_throughput
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


def image_files(images: str | Path | Sequence[str | Path] | None) -> list[Path]:
    """Image files to benchmark with (default: the repository's calib/ photos)."""
    paths = list_images(images or CALIB_DIR) if not isinstance(images, (list, tuple)) else [Path(p) for p in images]
    if not paths:
        raise ImageError(f"{images or CALIB_DIR}: no images to benchmark with")
    return paths


def load_frames(images: str | Path | Sequence[str | Path] | None) -> list[np.ndarray]:
    """Decoded BGR frames to feed the benchmark (default: the repository's calib/ photos)."""
    return [read_image(p) for p in image_files(images)]


def environment(selection: Selection, spec: ModelSpec, settings: dict) -> dict:
    """CPU, GPU, versions, the runner's report (backend, file, options) and precision, next to the numbers."""
    report = selection.report()
    report.pop("last_times", None)
    report["options"] = dataclasses.asdict(report["options"])
    return {"machine": machine(), "packages": {k: v for k, v in versions().items() if v},
            "runner": report["description"], "report": report, "precision": spec.precision,
            "cpu_count": os.cpu_count(), "runner_options": settings["runner_options"]}


def _items(item: Any, seconds: float, min_iters: int) -> Iterator[Any]:
    """``item`` again and again until ``seconds`` have passed and ``min_iters`` were handed out."""
    start, n = time.perf_counter(), 0
    while n < min_iters or time.perf_counter() - start < seconds:
        n += 1
        yield item


def _phase(runner: Runner, item: Any, prepare: PrepareFn | None, seconds: float, min_iters: int,
           record: Callable[[BatchOutput, float], None] | None, bar: Any = None,
           device_fill: Any = None) -> tuple[int, float]:
    """Run ``item`` through ``runner.run()`` (or ``run_on_device`` with ``device_fill``) for a while.

    Returns (images after the first result, wall seconds).
    """
    images, first, last = 0, None, None
    items = _items(item, seconds, min_iters)
    outputs = runner.run_on_device(items, device_fill, copy=False) if device_fill is not None \
        else runner.run(items, prepare, copy=False)
    for out in outputs:
        now = time.perf_counter()
        if first is None:
            first = now
        else:
            images += out.batch
        if record is not None:
            record(out, now - last if last is not None else None)
        last = now
        if bar is not None:
            bar.update(1)
    return images, (last - first) if first is not None else 0.0


def bench_batch(runner: Runner, spec: ModelSpec, sources: list, batch: int, *, warmup_s: float,
                duration_s: float, min_iters: int, progress: bool = False, rounds: int = 3,
                reduced_decode: bool | None = None, pool: DecodePool | None = None,
                device_fill: Any = None) -> BatchResult:
    """Inference only and the overlapped pipeline over ``sources`` (frames or files), side by side.

    The pipeline decodes and preprocesses each batch on ``pool`` (default: the shared
    pool over every core, :func:`vggedge.decode_pool.shared_pool`), or, with ``device_fill``
    (files only), decodes and preprocesses them on the GPU. After a warm-up of each, the two phases alternate for ``rounds`` rounds
    (``duration_s`` and ``min_iters`` split between them), so drift in the machine's
    load affects both alike.
    """
    from tqdm import tqdm

    count("rounds", rounds)
    chosen = [sources[i % len(sources)] for i in range(batch)]
    feed = {spec.input_name: preprocess(load_frames(chosen) if isinstance(chosen[0], Path) else chosen, spec)}

    decoders = pool or shared_pool()

    def prepare(items: list, inputs: dict[str, np.ndarray]) -> int:  # decode (files) and preprocess, all cores
        rows, errors = decoders.prepare_into(items, spec, inputs[spec.input_name], reduced_decode=reduced_decode)
        if errors:
            raise next(iter(errors.values()))  # the benchmark's own photos: a bad one is a setup error
        return len(rows)

    result = BatchResult(batch)

    def record_infer(out: BatchOutput, _: float | None) -> None:
        result.times["infer"].append(out.times["infer"])
        for stage in ("h2d", "compute", "d2h"):  # GPU runners report their copy/compute split (seconds)
            if stage in out.times:
                result.times[stage].append(out.times[stage])
        result.iterations += 1

    def record_pipeline(out: BatchOutput, interval: float | None) -> None:
        result.times["preprocess"].append(out.times["prepare"])
        if interval is not None:
            result.times["end_to_end"].append(interval)

    pipeline_item: Any = chosen
    if device_fill is not None:
        from .batches import ImageBatch

        def checked(batch: Any, slot: Any) -> int:
            rows = device_fill(batch, slot)
            if batch.errors:
                raise next(iter(batch.errors.values()))
            return rows

        pipeline_item, fill = ImageBatch(0, chosen), checked
    else:
        fill = None
    _phase(runner, feed, None, warmup_s, 1, None)
    _phase(runner, pipeline_item, prepare, warmup_s, 1, None, device_fill=fill)
    share_s, share_n = duration_s / rounds, -(-min_iters // rounds)
    images, wall = 0, 0.0
    with tqdm(total=2 * rounds * share_n, desc=f"batch {batch}", unit="it", disable=not progress,
              leave=False) as bar:
        for _ in range(rounds):
            _phase(runner, feed, None, share_s, share_n, record_infer, bar)
            got, seconds_ = _phase(runner, pipeline_item, prepare, share_s, max(share_n, 2), record_pipeline, bar,
                                   device_fill=fill)
            images, wall = images + got, wall + seconds_
    result.finish(images, wall)
    if result.unstable:
        log.warning("batch %d: unstable run, inference time varies by %.1f%% (coefficient of variation); "
                    "close other programs or raise --duration", batch, 100 * result.summary["infer"]["cv"])
    return result


def bench(model: str | Path, backend: str = "auto", batches: Sequence[int] = (1, 8), *, warmup_s: float = 1.0,
          duration_s: float = 3.0, min_iters: int = 10, images=None, progress: bool = True,
          options: RunnerOptions | None = None, precision: str = "as-given",
          end_to_end: bool = False, rounds: int = 3, reduced_decode: bool | None = None,
          decode_workers: int | None = None, decoder: str | None = None) -> BenchReport:
    """Benchmark a model (ONNX with spec, or engine) on one backend over several batch sizes.

    ``end_to_end=True`` feeds image files (decoded in the prepare worker) instead
    of decoded frames to the pipeline phase; the two phases alternate ``rounds`` times.
    ``reduced_decode`` (None: the process-wide switch) decodes those JPEGs at reduced
    scale; the settings record whether it was on. Decoding and preprocessing run on
    ``decode_workers`` threads (default: every core, the shared pool), or on the GPU
    when ``decoder`` ("auto", "gpu", "cpu"; None: ``VGGEDGE_DECODER``, else auto) chooses it
    (a GPU runner with nvImageCodec); "gpu" or "cpu" needs ``end_to_end`` (frames are decoded
    before timing). The settings record the decoder that ran and why.
    """
    seconds("warmup", warmup_s, allow_zero=True)
    seconds("duration", duration_s)
    count("min_iters", min_iters)
    count("rounds", rounds)
    if not batches:
        raise ConfigError("batch sizes: expected at least one")
    wanted = decoder_wanted(decoder)  # checked now, before any model loads
    if decoder is not None and wanted != "auto" and not end_to_end:
        raise ConfigError(f"decoder {decoder!r} chooses where image files decode, which only end_to_end=True "
                          "(--end-to-end) times; without it the frames are decoded before timing")
    for b in batches:
        count("batch size", b)
    options = dataclasses.replace(options or RunnerOptions(), max_batch=max(batches))
    plan = plan_selection(model, backend, options=options, precision=precision)
    ran = plan.require_spec()  # the spec of the file that runs (e.g. the INT8 variant the CPU planner chose)
    fixed = ran.fixed_batch
    if fixed and any(b != fixed for b in batches):
        raise ConfigError(f"{model} has a fixed batch of {fixed}; benchmark it with --batch {fixed}")
    sources: list = image_files(images) if end_to_end else load_frames(images)
    selection = open_plan(plan)
    choice = select_decoder(decoder, runner=selection.runner, spec=ran) if end_to_end else None  # before loading
    fed = "image files (decode + preprocess)" if end_to_end else "decoded frames (preprocess)"
    settings = {"warmup_s": warmup_s, "duration_s": duration_s, "min_iters": min_iters, "batches": list(batches),
                "runner_options": dataclasses.asdict(plan.options), "frames": len(sources),
                "end_to_end": end_to_end, "rounds": rounds,
                "reduced_decode": end_to_end and reduced_decode_enabled(reduced_decode),
                "decode_workers": decode_workers or shared_pool().workers,
                "timed": f"inference only, then {fed} overlapped with inference through Runner.run()"}
    pool = DecodePool(decode_workers) if decode_workers else shared_pool()
    with selection.runner as runner, (pool if decode_workers else nullcontext()):
        fill = device_fill(runner, ran, choice.kind) if choice is not None else None
        settings["decoder"] = "gpu (nvImageCodec + CUDA preprocessing)" if fill is not None else "cpu pool"
        settings["decoder_reason"] = choice.reason if choice is not None else "frames decoded before timing"
        report = BenchReport(str(model), selection.backend, ran.precision,
                             environment(selection, ran, settings), settings)
        try:
            for batch in batches:
                report.results.append(bench_batch(runner, ran, sources, batch, warmup_s=warmup_s,
                                                  duration_s=duration_s, min_iters=min_iters, progress=progress,
                                                  rounds=rounds, reduced_decode=reduced_decode, pool=pool,
                                                  device_fill=fill))
        finally:
            if fill is not None:
                fill.free()
    return report


def format_report(report: BenchReport) -> str:
    """A trtexec-like table: throughput and latency percentiles per batch size, in milliseconds."""
    env = report.environment
    lines = [f"model {report.model} | backend {env['runner']} | precision {report.precision} | "
             f"cpu {env['machine']['cpu']} x{env['cpu_count']}",
             f"{'batch':>5} {'img/s':>8} {'e2e img/s':>10} {'ratio':>6} {'stage':>10} {'min':>8} {'mean':>8}"
             f" {'median':>8} {'p90':>8} {'p95':>8} {'p99':>8} {'cv':>6}"]
    for r in report.results:
        for i, (stage, s) in enumerate(r.summary.items()):
            head = (f"{r.batch:>5} {r.model_throughput:>8.2f} {r.end_to_end_throughput:>10.2f} {r.ratio:>6.2f}"
                    if i == 0 else " " * 32)
            lines.append(f"{head} {stage:>10} " + " ".join(f"{1000 * s[k]:>8.2f}" for k in
                         ("min", "mean", "median", "p90", "p95", "p99")) + f" {100 * s['cv']:>5.1f}%")
        if r.unstable:
            lines.append(f"{'':>32} WARNING: unstable (inference cv {100 * r.summary['infer']['cv']:.1f}% > "
                         f"{100 * UNSTABLE_CV:.0f}%)")
    fed = f"JPEG decoding ({report.settings.get('decoder', 'cpu pool')}) and preprocessing" \
        if report.settings.get("end_to_end") else "preprocessing of decoded frames"
    lines.append(f"times in ms; img/s = batch / median inference; e2e img/s overlaps {fed} with inference "
                 "(Runner.run); ratio = e2e / img/s; end_to_end = time between results")
    return "\n".join(lines)
