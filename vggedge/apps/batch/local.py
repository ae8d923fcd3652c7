"""The local engine: parallel decode workers -> full batches -> one runner's overlapped ``run()``.

Decoding and preprocessing run in a pool (threads by default: OpenCV releases
the GIL; processes on request) with at most ``prefetch`` images in flight, so
memory stays flat however many files there are. Good images are packed into
full batches (bad ones leave the batch and go to the errors file), fed through
:meth:`vggedge.runtime.base.Runner.run`, and each batch's rows are appended and
flushed before the next is requested.
"""
from __future__ import annotations

import collections
import functools
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from ...errors import VggEdgeError
from ...runtime.base import Runner
from ...spec import ModelSpec
from .decode import Limits, Loaded, load_item
from .inputs import Item
from .remote import STOP
from .rows import RowMaker, error_row
from .writers import Writer


@dataclass
class Batch:
    """Up to ``batch_size`` decoded images, plus the failures met while filling it."""

    keys: list[str] = field(default_factory=list)
    tensors: list[np.ndarray] = field(default_factory=list)
    decode_s: list[float] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Stages:
    """Seconds per stage (decode is summed over workers: CPU-seconds, not wall time)."""

    decode: float = 0.0
    prepare: float = 0.0
    infer: float = 0.0
    write: float = 0.0
    images: int = 0
    failed: int = 0

    def as_dict(self) -> dict[str, float]:
        return {"decode": self.decode, "prepare": self.prepare, "infer": self.infer, "write": self.write}


def make_pool(kind: str, workers: int) -> Executor:
    """Decode workers: ``thread`` (default) or ``process``."""
    return ProcessPoolExecutor(workers) if kind == "process" else ThreadPoolExecutor(
        workers, thread_name_prefix="vggedge-decode")


def bounded_map(pool: Executor, fn: Callable[[Any], Any], items: Iterable[Any], ahead: int) -> Iterator[Any]:
    """``map`` in input order with at most ``ahead`` calls submitted and not yet consumed."""
    pending: collections.deque = collections.deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()


class Batcher:
    """Packs decoded images into full batches; failures travel with the batch that follows them."""

    def __init__(self, loaded: Iterable[Loaded], size: int) -> None:
        self.loaded, self.size = loaded, size
        self.trailing: list[dict[str, Any]] = []  # failures after the last good image

    def __iter__(self) -> Iterator[Batch]:
        batch = Batch()
        for item in self.loaded:
            if item.tensor is None:
                batch.errors.append({**error_row(item.key, item.kind, item.error), "_s": item.seconds})
                continue
            batch.keys.append(item.key)
            batch.tensors.append(item.tensor)
            batch.decode_s.append(item.seconds)
            if len(batch.keys) == self.size:
                yield batch
                batch = Batch()
        if batch.keys:
            yield batch
        else:
            self.trailing = batch.errors


def run_local(items: Iterable[Item], spec: ModelSpec, runner: Runner, rows: RowMaker, writer: Writer,
              errors: Writer, *, batch_size: int, workers: int, worker_kind: str = "thread",
              prefetch: int | None = None, limits: Limits = Limits(),
              on_progress: Callable[[int], None] = lambda n: None) -> Stages:
    """Process every item on an active runner, writing rows and errors as each batch completes."""
    stages = Stages()
    ahead = prefetch or max(2 * batch_size, 4 * workers)
    load = functools.partial(load_item, spec=spec, limits=limits)
    STOP.clear()
    pool = make_pool(worker_kind, workers)
    try:
        return _run_pool(pool, items, load, ahead, spec, runner, rows, writer, errors, batch_size, stages,
                         on_progress)
    except BrokenProcessPool:
        raise VggEdgeError(f"a decode worker process died (killed, or out of memory); the rows written so far "
                           f"are kept in {writer.path}: run again with --resume") from None
    finally:
        STOP.set()  # reads in flight end at their next chunk, so a stop never waits for a slow URL
        pool.shutdown(wait=False, cancel_futures=True)  # decodes still in flight are not needed


def _run_pool(pool: Executor, items: Iterable[Item], load: Callable[[Item], Loaded], ahead: int, spec: ModelSpec,
              runner: Runner, rows: RowMaker, writer: Writer, errors: Writer, batch_size: int, stages: Stages,
              on_progress: Callable[[int], None]) -> Stages:
    def prepare(batch: Batch, inputs: dict[str, np.ndarray]) -> int:
        target = inputs[spec.input_name]
        for i, tensor in enumerate(batch.tensors):
            target[i] = tensor
        return len(batch.tensors)

    batcher = Batcher(bounded_map(pool, load, items, ahead), batch_size)
    with runner.run(batcher, prepare, copy=False) as results:
        for out in results:
            batch: Batch = out.tag
            t0 = time.perf_counter()
            writer.write(rows.rows(batch.keys, out.outputs[spec.output_name], batch.decode_s,
                                   out.times.get("infer", 0.0)))
            _write_errors(errors, batch.errors, stages)
            stages.write += time.perf_counter() - t0
            stages.images += out.batch
            stages.decode += sum(batch.decode_s)
            stages.prepare += out.times.get("prepare", 0.0)
            stages.infer += out.times.get("infer", 0.0)
            on_progress(out.batch + len(batch.errors))
            batch.tensors.clear()
    _write_errors(errors, batcher.trailing, stages)
    on_progress(len(batcher.trailing))
    return stages


def _write_errors(errors: Writer, found: list[dict[str, Any]], stages: Stages) -> None:
    if found:
        stages.decode += sum(e.pop("_s", 0.0) for e in found)
        errors.write(found)
        stages.failed += len(found)
