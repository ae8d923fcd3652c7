"""``RunFeed``: one runner's overlapped ``run()`` fed batch by batch by callers that each wait for their result.

A Ray actor receives its batches as separate calls (several at once with
``max_concurrent_calls_per_actor``), each of which must return its own rows. Calling
``infer()`` per call would leave the device idle while the next batch is decoded or
copied. A feed instead keeps one ``run()`` (or ``run_on_device()``) open on a thread of
its own, which makes every runner and device call: :meth:`RunFeed.submit` queues a batch
and blocks until that batch's :class:`~vggedge.runtime.base.BatchOutput` comes back.
While one caller waits on its inference, the next caller's batch is prepared into a
free slot, as in a local job. When no batch is waiting, the source yields
:data:`~vggedge.runtime.base.IDLE`, so the run hands back what is in flight instead of
holding it for input that may never come.

A failure of the run (a device error, a ``prepare`` that raised) fails every waiting
caller and every later :meth:`~RunFeed.submit` with that same error: the feed does not
restart a run on a runner in an unknown state.
"""
from __future__ import annotations

import collections
import queue
import threading
from concurrent.futures import Future
from typing import Any, Callable, Iterator

from ..errors import VggEdgeError
from .base import IDLE, BatchOutput, PrepareFn, Runner

_STOP = object()


class RunFeed:
    """One open ``run()`` on ``runner`` (active), fed by :meth:`submit` from any thread.

    ``prepare`` as for :meth:`Runner.run` (None: items are ready feeds); ``device_fill``
    instead runs :meth:`run_on_device` (GPU runners: the fill writes each batch into the
    slot's device input). ``poll_s`` is how long the source waits for another batch,
    while batches are in flight, before it yields IDLE. Use as a context manager, or
    :meth:`start` and :meth:`close`.
    """

    def __init__(self, runner: Runner, prepare: PrepareFn | None = None, *,
                 device_fill: Callable[[Any, Any], int] | None = None, poll_s: float = 0.002,
                 name: str = "vggedge-feed") -> None:
        self.runner, self.prepare, self.device_fill, self.poll_s = runner, prepare, device_fill, poll_s
        self.name = name
        self._queue: queue.Queue = queue.Queue()
        self._waiting: collections.deque[Future] = collections.deque()  # handed to the run, in order
        self._lock = threading.Lock()
        self._failed: BaseException | None = None
        self._closed = False
        self._thread: threading.Thread | None = None
        #: the most batches handed to the run and not yet returned at one time (2+ means they overlapped)
        self.max_in_flight = 0

    # lifecycle ----------------------------------------------------------------
    def start(self) -> "RunFeed":
        """Open the run on the feed's thread (once)."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()
        return self

    def close(self, timeout: float | None = None) -> None:
        """Finish the batches already submitted, end the run and join its thread (safe twice)."""
        with self._lock:
            self._closed = True
            thread = self._thread
        self._queue.put((_STOP, None))
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def __enter__(self) -> "RunFeed":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # calls ----------------------------------------------------------------------
    def submit(self, item: Any) -> BatchOutput:
        """Run one batch through the open run; blocks until its result (outputs copied: the caller keeps them).

        Raises the run's error if the run failed before or while this batch was in it.
        """
        future: Future = Future()
        with self._lock:
            if self._failed is not None:
                raise self._failed
            if self._closed or self._thread is None:
                raise VggEdgeError(f"{self.name}: submit() on a feed that is "
                                   f"{'closed' if self._closed else 'not started'}")
            self._queue.put((item, future))
        return future.result()

    # the feed's thread ----------------------------------------------------------
    def _items(self) -> Iterator[Any]:
        """The run's source: queued batches in order; IDLE while batches are in flight and none is queued."""
        while True:
            try:
                item, future = self._queue.get(timeout=self.poll_s) if self._waiting else self._queue.get()
            except queue.Empty:
                yield IDLE
                continue
            if item is _STOP:
                return
            if not future.set_running_or_notify_cancel():
                continue
            self._waiting.append(future)
            self.max_in_flight = max(self.max_in_flight, len(self._waiting))
            yield item

    def _loop(self) -> None:
        try:
            if self.device_fill is not None:
                results = self.runner.run_on_device(self._items(), self.device_fill, copy=True)  # type: ignore
            else:
                results = self.runner.run(self._items(), self.prepare, copy=True)
            with results:
                for out in results:
                    self._waiting.popleft().set_result(out)
        except BaseException as exc:  # every waiting caller, and every later one, gets the run's error
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            self._failed = exc
        while self._waiting:
            self._waiting.popleft().set_exception(exc)
        while True:  # queued but never handed to the run
            try:
                item, future = self._queue.get_nowait()
            except queue.Empty:
                return
            if future is not None and future.set_running_or_notify_cancel():
                future.set_exception(exc)


__all__ = ["RunFeed"]
