"""Batch inference over large image sets, locally or on a Ray cluster (``vggedge batch``).

>>> from vggedge import batch                                      # doctest: +SKIP
>>> summary = batch.run(["photos/"], out="results.jsonl", model="engines/demo/vgg16.onnx")
>>> summary.images, summary.failed, summary.exit_status

Inputs: folders (recursive), globs, list files, WebDataset-style tar shards and
fsspec URLs (:mod:`.inputs`). Outputs: JSON lines, CSV, Parquet or .npy
features by extension, appended batch by batch and resumable (:mod:`.writers`);
bad images go to ``<out>.errors.jsonl``. Engines: ``local`` (:mod:`.local`) and
``ray`` (:mod:`.ray_engine`).
"""
from __future__ import annotations

import collections
import errno
import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from ...env import decoder_wanted
from ...errors import ConfigError, VggEdgeError
from ...runtime.base import RunnerOptions
from ...runtime.plan import Plan
from ...runtime.select import open_plan, plan_selection
from ...signals import sigterm_as_interrupt

from .decode import Limits
from .inputs import count_items, expand, iter_items
from .jobfile import OutputLock, check_job, job_identity
from .rows import RowMaker
from .summary import BatchSummary, peak_rss_mb
from .readers import format_of, read_rows
from .writers import errors_path_for, open_errors, open_writer

log = logging.getLogger(__name__)
ENGINES = ("local", "ray")
_WRITE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO,
                 errno.EISDIR, errno.ENOTDIR}
MAX_BATCH_SIZE = 4096  #: larger batches only allocate more; a 224x224 FP32 batch of 4096 is 2.4 GB
__all__ = ["BatchOptions", "BatchSummary", "ENGINES", "errors_path_for", "read_rows", "run"]


@dataclass(frozen=True)
class BatchOptions:
    """Everything a batch job takes besides inputs, output and model (the CLI's flags, one for one)."""

    backend: str = "auto"
    precision: str = "auto"  #: the fastest CPU variant beside the model; "as-given" runs the file named
    batch_size: int = 16
    top_k: int = 5
    features: bool = False  #: write the model's output vector instead of top-k labels
    resume: bool = False
    overwrite: bool = False
    workers: int | None = None  #: decode workers (default: the CPU count)
    worker_kind: str = "thread"  #: "thread" or "process"
    prefetch: int | None = None  #: decoded images in flight (default: 2 batches or 4 per worker)
    threads: int | None = None  #: onnxruntime intra-op threads (default: the backend's tuned count)
    progress: bool | None = None  #: tqdm bar (default: when stderr is a terminal)
    max_bytes: int = Limits.max_bytes
    max_pixels: int = Limits.max_pixels
    read_timeout: float = Limits.timeout  #: seconds a remote read may wait for data (a body: 4x that)
    address: str | None = None  #: Ray: "auto", "ray://host:10001", or None for a local instance
    ray_actors: int | None = None  #: Ray: inference actors (default: one per GPU, else 1)
    ray_gpus_per_actor: float | None = None  #: Ray: default 1 when the cluster has GPUs, else 0
    ray_object_store_mb: int = 1024  #: Ray: object-store memory Ray Data may hold in flight
    #: where images decode: "auto", "gpu" or "cpu" (None: ``VGGEDGE_DECODER``, else auto); see docs/batch.md
    decoder: str | None = None

    def __post_init__(self) -> None:
        for name in ("batch_size", "top_k", "max_bytes", "max_pixels", "ray_object_store_mb"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"batch option {name}={value!r}: expected an integer >= 1")
        for name in ("workers", "prefetch", "threads", "ray_actors"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"batch option {name}={value!r}: expected an integer >= 1 or None")
        if self.batch_size > MAX_BATCH_SIZE:
            raise ConfigError(f"batch option batch_size={self.batch_size}: expected at most {MAX_BATCH_SIZE} "
                              "(one batch of inputs is held in memory at once)")
        timeout = self.read_timeout
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not math.isfinite(timeout) \
                or not 0 < timeout <= 86400:
            raise ConfigError(f"batch option read_timeout={timeout!r}: expected seconds, a number > 0 and <= 86400")
        if self.worker_kind not in ("thread", "process"):
            raise ConfigError(f"batch option worker_kind={self.worker_kind!r}: expected 'thread' or 'process'")
        if self.decoder is not None:
            decoder_wanted(self.decoder)  # an unknown value is refused before anything is read

    @property
    def limits(self) -> Limits:
        return Limits(self.max_bytes, self.max_pixels, float(self.read_timeout))


def run(inputs: Sequence[str | Path] | str | Path, out: str | Path, model: str | Path, *, engine: str = "local",
        **options: object) -> BatchSummary:
    """Run ``model`` over every image in ``inputs``, writing one row per image to ``out``.

    ``options`` are :class:`BatchOptions` fields. Returns the summary; its
    ``exit_status`` is EXIT_PARTIAL when any image failed (recorded in
    ``<out>.errors.jsonl``). Ctrl-C and SIGTERM stop cleanly with everything
    written so far kept for ``resume=True``.
    """
    if engine not in ENGINES:
        raise ConfigError(f"engine {engine!r} is unknown; choose one of {', '.join(ENGINES)}")
    opts = BatchOptions(**options)  # type: ignore[arg-type]
    inputs = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    # the file that runs, its spec, and the batch (a fixed-batch model takes exactly its own), decided once
    plan = plan_selection(model, opts.backend, precision=opts.precision,
                          options=RunnerOptions(max_batch=opts.batch_size, threads=opts.threads))
    spec = plan.require_spec()
    ignored: collections.Counter = collections.Counter()
    entries = expand(inputs, ignored)
    features = opts.features or spec.output_kind == "features"
    format_of(out)
    if Path(out).is_dir():
        raise ConfigError(f"--out {out} is a folder; expected a results file (.jsonl, .csv, .parquet or .npy)")
    with sigterm_as_interrupt(), OutputLock(out):
        check_job(out, job_identity(plan.artefact, features, opts.top_k), resume=opts.resume,
                  overwrite=opts.overwrite, notes={"decoder": decoder_wanted(opts.decoder)})
        try:
            if engine == "ray":
                from .ray_engine import run_ray

                summary = run_ray(entries, Path(out), Path(model), plan, opts)
            else:
                summary = _run_local(entries, Path(out), Path(model), plan, opts)
        except OSError as exc:
            if exc.errno not in _WRITE_ERRNOS:
                raise
            raise VggEdgeError(f"output {out}: cannot write ({exc.strerror or exc}); the rows written so far "
                               "are kept: free space or fix the folder, then --resume") from None
    summary.ignored = dict(ignored)
    return summary


def _run_local(entries: list[str], out: Path, model: Path, plan: Plan, opts: BatchOptions) -> BatchSummary:
    from tqdm import tqdm

    from .local import choose_decoder, run_local

    spec, batch_size = plan.require_spec(), plan.options.max_batch
    selection = open_plan(plan)
    decoder = choose_decoder(opts.decoder, selection.runner, spec, opts.worker_kind)  # before any session loads
    features = opts.features or spec.output_kind == "features"
    with open_writer(out, features, resume=opts.resume, overwrite=opts.overwrite) as writer, \
            open_errors(out, resume=opts.resume, overwrite=opts.overwrite) as errors, selection.runner as runner:
        done = (writer.done() | errors.done()) if opts.resume else set()
        precision = spec.precision  # of the file that runs (the CPU planner may pick an INT8 variant)
        rows = RowMaker(spec, model.name, precision, selection.backend, opts.top_k, features)
        total = count_items(entries)
        skipped = [0]

        def todo() -> Iterator:
            for item in iter_items(entries, max_bytes=opts.max_bytes):
                if item.key in done:
                    skipped[0] += 1
                else:
                    yield item

        show = sys.stderr.isatty() if opts.progress is None else opts.progress
        with tqdm(total=None if total is None else max(0, total - len(done)), unit="img", disable=not show,
                  desc="vggedge batch", dynamic_ncols=True) as bar:
            t0 = time.perf_counter()  # from the first image: model loading is not throughput
            stages = run_local(todo(), spec, runner, rows, writer, errors, batch_size=batch_size,
                               workers=opts.workers or os.cpu_count() or 1, worker_kind=opts.worker_kind,
                               prefetch=opts.prefetch, limits=opts.limits, on_progress=bar.update,
                               decoder=decoder.kind)
        seconds = time.perf_counter() - t0
        writer.finish()
        errors.finish()
    rss = peak_rss_mb() + (peak_rss_mb(children=True) if opts.worker_kind == "process" else 0.0)
    return BatchSummary(str(out), str(errors_path_for(out)), "local", selection.backend, precision,
                        images=stages.images, failed=stages.failed, skipped=skipped[0],
                        seconds=seconds, stages=stages.as_dict(), peak_rss_mb=rss, decoder=decoder.kind,
                        decoder_reason=decoder.reason)
