"""One decode pool over all cores: JPEG decoding and OpenCV preprocessing in parallel threads.

OpenCV releases the GIL while it decodes and resizes, so threads use every core.
Every app that decodes on the CPU goes through here: ``bench --end-to-end``,
``classify`` (through :mod:`vggedge.apps.batches`), the local ``batch`` engine
and ``stream`` (frames preprocessed in parallel).

>>> from vggedge.decode_pool import shared_pool                      # doctest: +SKIP
>>> rows, errors = shared_pool().prepare_into(paths, spec, batch)    # good rows first, errors by offset

A source that cannot be decoded never stops the batch: :meth:`DecodePool.prepare_into`
returns its :class:`~vggedge.errors.ImageError` by offset and packs the good rows
first. JPEGs decode at a reduced DCT scale where the process-wide switch allows
(:func:`vggedge.preprocess.reduced_decode_enabled`), as everywhere else.

:func:`shared_pool` is the one process-wide pool (``os.cpu_count()`` threads,
created on first use, shut down at exit); :class:`DecodePool` is also a context
manager for a pool of one's own size. Work submitted from one of the pool's own
threads runs inline, so nested use cannot deadlock.
"""
from __future__ import annotations

import atexit
import collections
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

import numpy as np

from .errors import ConfigError, ImageError
from .preprocess import ImageLike, prepare
from .spec import ModelSpec

T = TypeVar("T")
R = TypeVar("R")
THREAD_PREFIX = "vggedge-decode"
_INSIDE = threading.local()  # .pool is set on the pool's own threads


def default_workers() -> int:
    """Threads of the shared pool: every core the process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class DecodePool:
    """A thread pool for decoding and preprocessing; ``with DecodePool(8) as pool: ...``.

    ``workers`` defaults to every core (:func:`default_workers`). ``workers == 1``
    runs everything inline on the caller's thread (no threads at all).
    """

    def __init__(self, workers: int | None = None) -> None:
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise ConfigError(f"decode workers={workers!r}: expected an integer >= 1 or None (every core)")
        self.workers = workers or default_workers()
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self.closed = False

    # lifecycle -------------------------------------------------------------
    def _pool(self) -> ThreadPoolExecutor | None:
        if self.workers == 1 or getattr(_INSIDE, "pool", None) is self:
            return None  # inline: one worker, or called from one of our own threads
        with self._lock:
            if self.closed:
                raise ConfigError("decode pool used after close()")
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix=THREAD_PREFIX,
                                                    initializer=self._mark)
            return self._executor

    def _mark(self) -> None:
        _INSIDE.pool = self

    def close(self) -> None:
        """Wait for queued work and stop the threads (safe twice)."""
        with self._lock:
            executor, self._executor, self.closed = self._executor, None, True
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "DecodePool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # work ------------------------------------------------------------------
    def submit(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> Future:
        """One call in the pool (inline, as an already finished future, when the pool runs inline)."""
        pool = self._pool()
        if pool is not None:
            return pool.submit(fn, *args, **kwargs)
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # the caller sees it from result(), as from a thread
            future.set_exception(exc)
        return future

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``[fn(x) for x in items]`` in parallel, in order; the first exception is raised after all finished."""
        futures = [self.submit(fn, item) for item in items]
        return [f.result() for f in futures]

    def imap(self, fn: Callable[[T], R], items: Iterable[T], ahead: int | None = None) -> Iterator[R]:
        """Lazy ordered map with at most ``ahead`` calls (default 4 per worker) submitted and not yet consumed."""
        return bounded_map(self.submit, fn, items, ahead or 4 * self.workers)

    def prepare_into(self, sources: Sequence[ImageLike], spec: ModelSpec, out: np.ndarray, *,
                     reduced_decode: bool | None = None) -> tuple[list[int], dict[int, ImageError]]:
        """Decode and preprocess ``sources`` into ``out`` in parallel: (offsets of the rows, errors by offset).

        Row ``i`` of ``out`` holds source ``rows[i]``: the good sources, in order, packed
        first. A source that fails is left out and its ImageError returned under its offset.
        """
        if len(sources) > len(out):
            raise ConfigError(f"{len(sources)} sources do not fit an output of {len(out)} rows")

        def one(offset: int) -> ImageError | None:
            try:
                prepare(sources[offset], spec, out=out[offset], reduced_decode=reduced_decode)
            except ImageError as exc:
                return exc
            return None

        outcomes = self.map(one, range(len(sources)))
        errors = {offset: exc for offset, exc in enumerate(outcomes) if exc is not None}
        rows = [offset for offset in range(len(sources)) if offset not in errors]
        for row, offset in enumerate(rows):  # pack: good rows first, in order
            if row != offset:
                out[row] = out[offset]
        return rows, errors


def bounded_map(submit: Callable[..., Future], fn: Callable[[T], R], items: Iterable[T], ahead: int) -> Iterator[R]:
    """``map`` in input order through ``submit`` (any executor's), at most ``ahead`` calls not yet consumed."""
    pending: collections.deque = collections.deque()
    try:
        for item in items:
            pending.append(submit(fn, item))
            if len(pending) >= max(1, ahead):
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()


_SHARED: DecodePool | None = None
_SHARED_LOCK = threading.Lock()


def shared_pool() -> DecodePool:
    """The process-wide decode pool over every core (created on first use, closed at exit)."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None or _SHARED.closed:
            _SHARED = DecodePool()
            atexit.register(_SHARED.close)
        return _SHARED
