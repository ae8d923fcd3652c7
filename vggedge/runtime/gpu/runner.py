"""``PipelineRunner``: the runner contract on top of the slot pipeline (the base of the GPU runners).

``activate`` takes the device's primary context and allocates ``options.slots``
slots once; ``run`` overlaps the host's preparation of the next batch, the copies
and the compute of the batches in flight; ``infer`` is one blocking batch on slot 0.
``infer`` and ``run`` never interleave: ``infer`` refuses while a ``run`` is
active, and a ``run`` refuses to start while an ``infer`` holds the slots.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np

from ...errors import VggEdgeError
from ..base import BatchOutput, PrepareFn, Runner, RunnerOptions, RunIterator
from .cuda import CudaContext, require_cuda
from .pipeline import Pipeline, Slot, SlotScheduler, TensorSpec, drive


#: fill(item, slot) -> rows: enqueue one batch's input into ``slot.device`` on ``slot.stream`` (context pushed)
DeviceFillFn = Callable[[Any, Slot], int]


class PipelineRunner(Runner):
    """Base of the GPU runners: a primary CUDA context and a :class:`Pipeline` of slots.

    ``options.device`` picks the GPU, ``options.slots`` the batches in flight.
    Subclasses load their model in :meth:`_open_backend`, enqueue one batch in
    :meth:`_execute` and drop it in :meth:`_close_backend`. Use one runner per
    worker thread.
    """

    range_source = "the runner's buffers"

    def __init__(self, options: RunnerOptions | None = None) -> None:
        super().__init__(options)
        self.device, self.num_slots = self.runner_options.device, self.runner_options.slots
        self.ctx: CudaContext | None = None
        self.pipeline: Pipeline | None = None
        self._slots_lock = threading.Lock()  # held by infer() for one batch and by run() for its whole life

    # lifecycle ----------------------------------------------------------------
    def _activate(self) -> None:
        require_cuda(self.name)
        self.ctx = CudaContext(self.device).open()
        try:
            with self.ctx:
                inputs, outputs, min_batch = self._open_backend()
            self.pipeline = Pipeline(self.ctx, inputs, outputs, self._execute, self.num_slots,
                                     min_batch=min_batch, range_source=self.range_source).allocate()
            with self.ctx:
                self._bind_slots(self.pipeline.slots)
        except BaseException:
            self._deactivate()
            raise

    def _deactivate(self) -> None:
        """Drop the backend first (its handles may still use our streams), synchronise, then free the slots."""
        try:
            if self.ctx is not None and self.ctx.is_open:
                with self.ctx:
                    try:
                        self._close_backend()
                    finally:
                        self.ctx.synchronize()
        finally:
            if self.pipeline is not None:
                self.pipeline.free()
                self.pipeline = None
            if self.ctx is not None:
                self.ctx.release()
                self.ctx = None

    # inference ----------------------------------------------------------------
    def batch_range(self) -> tuple[int, int]:
        """(min, max) rows one submission takes; fewer than min are padded on submission."""
        self._require_active("batch_range")
        return self.pipeline.min_batch, self.pipeline.max_batch

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._running:
            raise VggEdgeError(f"{self.name}: infer() called while a run() is in progress; "
                               "finish or close() that iterator first")
        with self._slots_lock:
            n = self.pipeline.copy_feed(feed, self.pipeline.slots[0].host_inputs)
            self.pipeline.submit(0, n)
            outputs, times = self.pipeline.collect(0)
            result = {name: array.copy() for name, array in outputs.items()}
        self.last_times = times.seconds()
        return result

    def run_on_device(self, items: Iterable[Any], fill: DeviceFillFn, *, copy: bool = True) -> RunIterator:
        """Like :meth:`run`, but ``fill(item, slot)`` writes each batch straight into ``slot.device``.

        ``fill`` enqueues its work (GPU decoding, the preprocessing kernel) on
        ``slot.stream`` with the context pushed and returns the rows written; no
        input crosses the host. Results come back in order, as from :meth:`run`.
        """
        self._require_active("run_on_device")
        if self._running:
            raise VggEdgeError(f"{self.name}: run_on_device() called while another run() on this runner is active")
        self._running = True
        return RunIterator(self, self._run(iter(items), None, copy, device_fill=fill))

    def _run(self, items: Iterator[Any], prepare: PrepareFn | None, copy: bool,
             device_fill: DeviceFillFn | None = None) -> Iterator[BatchOutput]:
        """Fill free slots (the host prepares into pinned memory) while earlier slots copy and compute."""
        pipeline = self.pipeline
        if not self._slots_lock.acquire(blocking=False):
            raise VggEdgeError(f"{self.name}: run() started while infer() runs in another thread; "
                               "use one runner per thread")
        fill_fn = prepare or pipeline.copy_feed

        def fill(slot: int, item: Any) -> tuple[int, Any, float]:
            t0 = time.perf_counter()
            if device_fill is not None:
                with self.ctx:
                    n = int(device_fill(item, pipeline.slots[slot]))
            else:
                n = int(fill_fn(item, pipeline.slots[slot].host_inputs))
            return n, item, time.perf_counter() - t0

        def collect(slot: int, token: tuple[int, Any, float]) -> BatchOutput:
            outputs, times = pipeline.collect(slot)
            self.last_times = {"prepare": token[2], **times.seconds()}
            if copy:
                outputs = {name: array.copy() for name, array in outputs.items()}
            return BatchOutput(outputs, token[0], token[1], dict(self.last_times))

        try:
            yield from drive(items, SlotScheduler(pipeline.num_slots), fill,
                             lambda slot, token: pipeline.submit(slot, token[0], on_device=device_fill is not None),
                             collect)
        finally:  # a consumer that stops early must not leave copies reading inputs we refill later
            try:
                pipeline.wait_all()
            finally:
                self._slots_lock.release()

    # backend hooks --------------------------------------------------------------
    def _open_backend(self) -> tuple[list[TensorSpec], list[TensorSpec], int]:
        """Load the model (context pushed); return input and output specs at max batch, and the min batch."""
        raise NotImplementedError

    def _bind_slots(self, slots: list[Slot]) -> None:
        """Optional: set per-slot backend state once the buffers exist (context pushed)."""

    def _execute(self, slot: Slot, batch_n: int) -> None:
        """Enqueue the model on ``slot.stream`` for ``batch_n`` rows without waiting."""
        raise NotImplementedError

    def _close_backend(self) -> None:
        """Drop backend objects (context pushed); must be safe after a failed open."""

    def report(self) -> dict[str, Any]:
        """The base report plus the GPU and the slots."""
        return {**super().report(), "device": self.device, "slots": self.num_slots}
