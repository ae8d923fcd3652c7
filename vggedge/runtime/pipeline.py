"""Overlapped GPU pipeline: N slots so copies, compute and CPU preprocessing overlap.

Each slot owns pinned host buffers, device buffers, one stream and four timing
events (H2D start/end, compute end, D2H end), all allocated once in
:meth:`Pipeline.allocate`. ``submit(slot, n)`` enqueues H2D copy, the runner's
execution and the D2H copy on the slot's stream without waiting; ``collect(slot)``
waits for that stream and returns the outputs and per-stage GPU times.

The scheduling is pure Python (:class:`SlotScheduler`, :func:`drive`) so it is
tested without a GPU: slots are filled round-robin, collected oldest first (so
results keep the input order), never more in flight than slots, and drained at
the end. While slots run on the GPU, the CPU preprocesses the next batch into a
free slot's pinned input.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, TypeVar

import numpy as np

from ..errors import InputError, VggEdgeError
from .cuda import CudaContext, CudaEvent, CudaStream, DeviceBuffer, PinnedBuffer

T = TypeVar("T")
R = TypeVar("R")


# --------------------------------------------------------------------------- pure scheduling
class SlotScheduler:
    """Which slot to fill next and which to collect next; no CUDA involved.

    Slots are handed out round-robin from a free list; collection is strictly
    first-submitted-first-collected, which preserves the order of results.
    """

    def __init__(self, num_slots: int) -> None:
        if num_slots < 1:
            raise VggEdgeError(f"a pipeline needs at least 1 slot, got {num_slots}")
        self.num_slots = num_slots
        self._free: deque[int] = deque(range(num_slots))
        self._in_flight: deque[tuple[int, int]] = deque()  # (slot, sequence number)
        self._next_seq = 0

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def acquire(self) -> int | None:
        """A free slot to fill, or None when every slot is in flight (collect first)."""
        return self._free.popleft() if self._free else None

    def submitted(self, slot: int) -> int:
        """Record that ``slot`` (from :meth:`acquire`) was submitted; returns its sequence number."""
        seq = self._next_seq
        self._next_seq += 1
        self._in_flight.append((slot, seq))
        return seq

    def release(self, slot: int) -> None:
        """Give back an acquired slot that was not submitted (e.g. preprocessing failed)."""
        self._free.appendleft(slot)

    def next_to_collect(self) -> tuple[int, int] | None:
        """(slot, sequence) of the oldest submission, or None when nothing is in flight."""
        return self._in_flight[0] if self._in_flight else None

    def collected(self) -> tuple[int, int]:
        """Mark the oldest submission collected; its slot becomes free again."""
        if not self._in_flight:
            raise VggEdgeError("collected() called with nothing in flight")
        slot, seq = self._in_flight.popleft()
        self._free.append(slot)
        return slot, seq


def drive(items: Iterable[T], scheduler: SlotScheduler, fill: Callable[[int, T], Any],
          submit: Callable[[int, Any], None], collect: Callable[[int, Any], R]) -> Iterator[R]:
    """Keep every slot busy: fill(slot, item) -> token; submit(slot, token); collect(slot, token) -> result.

    Results come out in the order of ``items``. A slot is refilled only after its
    previous result was collected and yielded, so a consumer that holds a result
    past its next iteration must copy it.
    """
    tokens: dict[int, Any] = {}
    for item in items:
        slot = scheduler.acquire()
        while slot is None:
            done, _ = scheduler.next_to_collect()
            result = collect(done, tokens.pop(done))
            scheduler.collected()
            yield result
            slot = scheduler.acquire()
        try:
            token = fill(slot, item)
            submit(slot, token)
        except BaseException:
            scheduler.release(slot)
            raise
        tokens[slot] = token
        scheduler.submitted(slot)
    while scheduler.in_flight:
        done, _ = scheduler.next_to_collect()
        result = collect(done, tokens.pop(done))
        scheduler.collected()
        yield result


# --------------------------------------------------------------------------- CUDA side
@dataclass(frozen=True)
class TensorSpec:
    """One I/O tensor of a pipeline: name, shape at the MAX batch (batch first) and dtype."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize


@dataclass
class StageTimes:
    """GPU milliseconds of one batch, from the slot's events."""

    h2d_ms: float
    compute_ms: float
    d2h_ms: float

    @property
    def total_ms(self) -> float:
        return self.h2d_ms + self.compute_ms + self.d2h_ms


@dataclass
class SlotResult:
    """Outputs of one batch (views of the slot's pinned buffers unless copied) and its timings."""

    outputs: dict[str, np.ndarray]
    batch: int
    times: StageTimes
    slot: int
    tag: Any = None


@dataclass
class Slot:
    """Everything one in-flight batch owns."""

    index: int
    stream: CudaStream
    host_inputs: dict[str, np.ndarray]
    host_outputs: dict[str, np.ndarray]
    device: dict[str, DeviceBuffer]
    events: dict[str, CudaEvent]
    owned: list[Any] = field(default_factory=list)
    batch: int = 0

    def pointers(self) -> dict[str, int]:
        """Device pointer of every I/O tensor, by name."""
        return {name: buf.ptr for name, buf in self.device.items()}


#: execute(slot, batch_n) enqueues the model on slot.stream (and must not wait for it).
Execute = Callable[[Slot, int], None]
EVENTS = ("h2d_start", "h2d_end", "compute_end", "d2h_end")


class Pipeline:
    """N slots of buffers, streams and events around a runner's ``execute`` callable."""

    def __init__(self, ctx: CudaContext, inputs: list[TensorSpec], outputs: list[TensorSpec],
                 execute: Execute, num_slots: int = 2) -> None:
        if num_slots < 1:
            raise VggEdgeError(f"num_slots must be at least 1, got {num_slots}")
        self.ctx, self.inputs, self.outputs = ctx, inputs, outputs
        self.execute, self.num_slots = execute, num_slots
        self.slots: list[Slot] = []

    @property
    def max_batch(self) -> int:
        return int(self.inputs[0].shape[0])

    def allocate(self) -> "Pipeline":
        """Allocate every slot's buffers, stream and events once (the context must be open)."""
        with self.ctx:
            try:
                for index in range(self.num_slots):
                    self.slots.append(self._make_slot(index))
            except BaseException:
                self._free_slots()
                raise
        return self

    def _make_slot(self, index: int) -> Slot:
        owned: list[Any] = []

        def keep(resource):
            owned.append(resource)
            return resource

        stream = keep(CudaStream())
        host_in = {t.name: keep(PinnedBuffer(t.shape, t.dtype)).array for t in self.inputs}
        host_out = {t.name: keep(PinnedBuffer(t.shape, t.dtype)).array for t in self.outputs}
        device = {t.name: keep(DeviceBuffer(t.nbytes)) for t in [*self.inputs, *self.outputs]}
        events = {name: keep(CudaEvent()) for name in EVENTS}
        return Slot(index, stream, host_in, host_out, device, events, owned)

    def free(self) -> None:
        """Wait for in-flight work and free every slot (safe twice)."""
        if self.slots and self.ctx.is_open:
            with self.ctx:
                try:
                    for slot in self.slots:
                        slot.stream.synchronize()
                finally:
                    self._free_slots()
        self.slots = []

    def _free_slots(self) -> None:
        for slot in self.slots:
            for resource in reversed(slot.owned):
                resource.free()
        self.slots = []

    # one batch ----------------------------------------------------------------
    def submit(self, slot: int, batch_n: int) -> None:
        """Enqueue H2D copy, execution and D2H copy of the first ``batch_n`` rows; returns at once."""
        s = self.slots[slot]
        if not 1 <= batch_n <= self.max_batch:
            raise InputError(f"batch of {batch_n} outside the pipeline's range 1..{self.max_batch}")
        s.batch = batch_n
        with self.ctx:
            s.events["h2d_start"].record(s.stream)
            for t in self.inputs:
                s.device[t.name].upload_async(s.host_inputs[t.name][:batch_n], s.stream)
            s.events["h2d_end"].record(s.stream)
            self.execute(s, batch_n)
            s.events["compute_end"].record(s.stream)
            for t in self.outputs:
                s.device[t.name].download_async(s.host_outputs[t.name][:batch_n], s.stream)
            s.events["d2h_end"].record(s.stream)

    def collect(self, slot: int) -> SlotResult:
        """Wait for a submitted slot; outputs are views of its pinned buffers (copy to keep)."""
        s = self.slots[slot]
        with self.ctx:
            s.stream.synchronize()
            ev = s.events
            times = StageTimes(ev["h2d_end"].elapsed_ms(ev["h2d_start"]),
                               ev["compute_end"].elapsed_ms(ev["h2d_end"]),
                               ev["d2h_end"].elapsed_ms(ev["compute_end"]))
        outputs = {name: array[:s.batch] for name, array in s.host_outputs.items()}
        return SlotResult(outputs, s.batch, times, slot)

    # many batches --------------------------------------------------------------
    def run(self, batches: Iterable[Any], preprocess_fn: Callable[[Any, dict[str, np.ndarray]], int] | None = None,
            *, overlap: bool = True, copy_outputs: bool = True) -> Iterator[SlotResult]:
        """Run every batch, yielding results in input order.

        ``preprocess_fn(item, inputs)`` writes one batch into the slot's pinned
        input arrays (``{name: array at max batch}``) and returns the batch size;
        without it, items are ``{name: array}`` feeds (or one array for a
        single-input model) copied in. ``overlap=False`` is the synchronous
        reference: one slot, submit then collect, nothing overlapped.
        """
        fill_fn = preprocess_fn or self.copy_feed
        scheduler = SlotScheduler(self.num_slots if overlap else 1)

        def fill(slot: int, item: Any) -> tuple[int, Any]:
            return int(fill_fn(item, self.slots[slot].host_inputs)), item

        def collect(slot: int, token: tuple[int, Any]) -> SlotResult:
            result = self.collect(slot)
            result.tag = token[1]
            if copy_outputs:
                result.outputs = {k: v.copy() for k, v in result.outputs.items()}
            return result

        try:
            yield from drive(batches, scheduler, fill, lambda slot, token: self.submit(slot, token[0]), collect)
        finally:  # a consumer that stops early must not leave copies reading pinned inputs we refill
            self.wait_all()

    def wait_all(self) -> None:
        """Block until every slot's stream is idle."""
        if self.slots:
            with self.ctx:
                for slot in self.slots:
                    slot.stream.synchronize()

    def copy_feed(self, feed: Mapping[str, np.ndarray] | np.ndarray, inputs: dict[str, np.ndarray]) -> int:
        """Copy a ready ``{name: array}`` feed (or a lone array) into a slot's pinned inputs; returns batch size."""
        if not isinstance(feed, Mapping):
            if len(inputs) != 1:
                raise InputError(f"the model has inputs {sorted(inputs)}; pass a {{name: array}} feed")
            feed = {next(iter(inputs)): feed}
        sizes = set()
        for name, target in inputs.items():
            if name not in feed:
                raise InputError(f"feed lacks input {name!r}; expected {sorted(inputs)}")
            array = np.asarray(feed[name])
            if array.dtype != target.dtype:
                raise InputError(f"input {name!r}: dtype {array.dtype}, expected {target.dtype}")
            n = array.shape[0] if array.ndim else 0
            if not 1 <= n <= target.shape[0] or array.shape[1:] != target.shape[1:]:
                raise InputError(f"input {name!r}: shape {array.shape}, expected (1..{target.shape[0]}, "
                                 f"{', '.join(map(str, target.shape[1:]))})")
            target[:n] = array
            sizes.add(n)
        if len(sizes) != 1:
            raise InputError(f"inputs have different batch sizes {sorted(sizes)}")
        return sizes.pop()
