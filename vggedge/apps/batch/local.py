"""The local engine: parallel decode workers -> full batches -> one runner's overlapped ``run()``.

Decoding and preprocessing run in a pool (by default a
:class:`~vggedge.decode_pool.DecodePool` of threads over every core: OpenCV releases
the GIL; processes on request) with at most ``prefetch`` images in flight, so
memory stays flat however many files there are. Good images are packed into
full batches (bad ones leave the batch and go to the errors file), fed through
:meth:`vggedge.runtime.base.Runner.run`, and each batch's rows are appended and
flushed before the next is requested.
"""
from __future__ import annotations

import dataclasses
import functools
import multiprocessing
import os
import signal
import threading
import time
from contextlib import contextmanager
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from ...decode_pool import DecodePool, bounded_map as _bounded_map, default_workers, shared_pool
from ...env import decoder_wanted
from ...errors import ConfigError, VggEdgeError
from ...runtime.base import Runner
from ...spec import ModelSpec
from .decode import BadImage, Limits, Loaded, check_encoded, load_item, read_bytes
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


def make_pool(kind: str, workers: int) -> Executor | DecodePool:
    """Decode workers: ``thread`` (default: the shared :class:`DecodePool` when ``workers`` is every core,
    else a pool of that size) or ``process``. Close it after use (closing the shared pool is a no-op here)."""
    if kind == "process":
        return WorkerProcesses(workers)
    return _Borrowed(shared_pool()) if workers == default_workers() else DecodePool(workers)


class WorkerProcesses(ProcessPoolExecutor):
    """Decode worker processes that stop with their job.

    :meth:`stop` ends every worker's reads in flight at their next chunk (the job's
    :data:`~vggedge.apps.batch.remote.STOP`, which a process does not share), so a
    stop never waits for a slow URL; a worker whose job process is gone (killed, even
    with SIGKILL) exits instead of waiting forever on its queue; workers ignore Ctrl-C,
    which the terminal sends to them too: the job decides how to stop.
    """

    def __init__(self, workers: int) -> None:
        context = multiprocessing.get_context()
        # a flag in shared memory, without a lock: a worker killed while holding an Event's lock would
        # leave stop() waiting for it forever
        self.stopping = context.RawValue("b", 0)
        super().__init__(workers, mp_context=context, initializer=_watch_job, initargs=(self.stopping,))

    def stop(self) -> None:
        """End reads in flight in every worker, drop decodes not started, and return without waiting."""
        self.stopping.value = 1
        self.shutdown(wait=False, cancel_futures=True)


def _watch_job(stopping: Any, period_s: float = 0.2) -> None:
    """A worker process's initializer: a thread that passes the job's stop on, and exits when the job is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:  # reparented: the job (or, under forkserver, its server) has ended
            if stopping.value and not STOP.is_set():
                STOP.set()
            time.sleep(period_s)
        os._exit(1)

    threading.Thread(target=watch, name="vggedge-job-watch", daemon=True).start()


class _Borrowed:
    """The shared pool, lent for a ``with`` block without closing it at the end."""

    def __init__(self, pool: DecodePool) -> None:
        self.pool = pool

    def submit(self, fn, *args, **kwargs):
        return self.pool.submit(fn, *args, **kwargs)

    def __enter__(self) -> "_Borrowed":
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def bounded_map(pool: Any, fn: Callable[[Any], Any], items: Iterable[Any], ahead: int) -> Iterator[Any]:
    """``map`` in input order on ``pool`` (anything with ``submit``), at most ``ahead`` calls not yet consumed."""
    return _bounded_map(pool.submit, fn, items, ahead)


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


def load_encoded(item: Item, limits: Limits) -> Loaded:
    """Read and check one item without decoding it (the GPU decodes): ``tensor`` holds the encoded bytes."""
    t0 = time.perf_counter()
    try:
        data = check_encoded(read_bytes(item, limits), limits)
        return Loaded(item.key, np.frombuffer(data, np.uint8), seconds=time.perf_counter() - t0)
    except BadImage as exc:
        return Loaded(item.key, None, str(exc), exc.kind, time.perf_counter() - t0)


@dataclass
class _EncodedBatch:
    """What the GPU fill (runtime/device_path.py) reads: encoded files named by key."""

    sources: list[np.ndarray]
    names: list[str]
    rows: list[int] = field(default_factory=list)
    errors: dict[int, Exception] = field(default_factory=dict)


def gpu_fill(spec: ModelSpec, runner: Runner, want: str | None) -> Callable[[Batch, Any], int]:
    """Fill for ``run_on_device``: decode a batch's encoded files on the GPU into the slot's input buffer.

    Files the GPU decoder and the CPU fallback both refuse leave the batch: their keys
    move to ``batch.errors`` (kind ``not-an-image``) and ``batch.keys`` keeps the good ones in row order.
    ``want`` is the decoder the user asked for: under "auto" a GPU decoder that cannot start
    leaves every file to the CPU fallback (one warning) instead of stopping the job.
    """
    from ...runtime.device_path import image_fill

    fill = image_fill(runner, spec, want, read=lambda encoded: encoded.tobytes())

    def fill_batch(batch: Batch, slot: Any) -> int:
        encoded = _EncodedBatch(batch.tensors, batch.keys)
        n = fill(encoded, slot)
        for offset, exc in sorted(encoded.errors.items()):
            batch.errors.append({**error_row(batch.keys[offset], "not-an-image", str(exc).split(": ", 1)[-1]),
                                 "_s": batch.decode_s[offset]})
        batch.keys = [batch.keys[o] for o in encoded.rows]
        batch.decode_s = [batch.decode_s[o] for o in encoded.rows]
        batch.tensors.clear()
        return n

    fill_batch.free = fill.free  # type: ignore[attr-defined]
    return fill_batch


def choose_decoder(want: str | None, runner: Runner, spec: ModelSpec, worker_kind: str = "thread") -> Any:
    """The local engine's decoder choice (a ``DecoderChoice``: ``kind`` and ``reason``), made once per job.

    :func:`vggedge.runtime.device_path.select_decoder`'s, except that process workers
    decode on the CPU: "auto" falls back to it, "gpu" is a ConfigError naming the fix.
    """
    from ...runtime.device_path import select_decoder

    choice = select_decoder(want, runner=runner, spec=spec)
    if choice.kind == "gpu" and worker_kind != "thread":
        if decoder_wanted(want) == "gpu":
            raise ConfigError("decoder 'gpu' decodes in the main process and reads files in threads; "
                              "worker_kind='process' (--worker-kind process) decodes on the CPU: drop one of them")
        return dataclasses.replace(choice, kind="cpu", reason="process workers decode on the CPU "
                                                              "(--worker-kind thread decodes on the GPU)")
    return choice


def run_local(items: Iterable[Item], spec: ModelSpec, runner: Runner, rows: RowMaker, writer: Writer,
              errors: Writer, *, batch_size: int, workers: int, worker_kind: str = "thread",
              prefetch: int | None = None, limits: Limits = Limits(),
              on_progress: Callable[[int], None] = lambda n: None, decoder: str | None = None) -> Stages:
    """Process every item on an active runner, writing rows and errors as each batch completes.

    ``decoder`` ("auto", "gpu", "cpu"; None: ``VGGEDGE_DECODER``, else auto; see
    :func:`choose_decoder`): on a GPU runner with nvImageCodec the workers only read and check
    the files, and each batch is decoded and preprocessed on the GPU straight into the runner's
    input buffer.
    """
    stages = Stages()
    ahead = prefetch or max(2 * batch_size, 4 * workers)
    on_gpu = choose_decoder(decoder, runner, spec, worker_kind).kind == "gpu"
    load = functools.partial(load_encoded, limits=limits) if on_gpu else \
        functools.partial(load_item, spec=spec, limits=limits)
    STOP.clear()
    pool = make_pool(worker_kind, workers)
    try:
        return _run_pool(pool, items, load, ahead, spec, runner, rows, writer, errors, batch_size, stages,
                         on_progress, gpu_fill(spec, runner, decoder) if on_gpu else None)
    except BrokenProcessPool:
        raise VggEdgeError(f"a decode worker process died (killed, or out of memory); the rows written so far "
                           f"are kept in {writer.path}: run again with --resume") from None
    finally:
        STOP.set()  # reads in flight end at their next chunk, so a stop never waits for a slow URL
        if isinstance(pool, WorkerProcesses):
            pool.stop()  # decodes still in flight are not needed
        else:
            pool.__exit__(None, None, None)


def _run_pool(pool: Executor, items: Iterable[Item], load: Callable[[Item], Loaded], ahead: int, spec: ModelSpec,
              runner: Runner, rows: RowMaker, writer: Writer, errors: Writer, batch_size: int, stages: Stages,
              on_progress: Callable[[int], None], fill: Any = None) -> Stages:
    def prepare(batch: Batch, inputs: dict[str, np.ndarray]) -> int:
        target = inputs[spec.input_name]
        for i, tensor in enumerate(batch.tensors):
            target[i] = tensor
        return len(batch.tensors)

    with _freed(fill):
        batcher = Batcher(bounded_map(pool, load, items, ahead), batch_size)
        results_iter = runner.run_on_device(batcher, fill, copy=False) if fill is not None \
            else runner.run(batcher, prepare, copy=False)  # type: ignore[attr-defined]
        with results_iter as results:
            for out in results:
                batch: Batch = out.tag
                if not batch.keys:  # every file of this batch failed on the GPU: only its errors are written
                    _write_errors(errors, batch.errors, stages)
                    on_progress(len(batch.errors))
                    continue
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


@contextmanager
def _freed(fill: Any) -> Iterator[None]:
    try:
        yield
    finally:
        if fill is not None:
            fill.free()


def _write_errors(errors: Writer, found: list[dict[str, Any]], stages: Stages) -> None:
    if found:
        stages.decode += sum(e.pop("_s", 0.0) for e in found)
        errors.write(found)
        stages.failed += len(found)
