"""The slots of the overlapped GPU pipeline: N batches in flight so copies, compute and CPU preprocessing overlap.

Each slot owns pinned host buffers, device buffers, one stream and four timing
events (H2D start/end, compute end, D2H end), all allocated once in
:meth:`Pipeline.allocate`. ``submit(slot, n)`` enqueues the H2D copy, the
runner's execution and the D2H copy on the slot's stream without waiting;
``collect(slot)`` waits for that stream and returns outputs and GPU stage times.

Scheduling is pure Python (:class:`SlotScheduler`, :func:`drive`), tested without
a GPU: slots are filled round-robin and collected oldest first (results keep the
input order), never more in flight than slots, drained at the end. While slots
run on the GPU, the CPU preprocesses the next batch into a free slot's pinned input.
:class:`vggedge.runtime.gpu.runner.PipelineRunner` puts the runner contract on top.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, TypeVar

import numpy as np

from ...errors import InputError, VggEdgeError
from ..base import IDLE
from .cuda import CudaContext, CudaEvent, CudaStream, DeviceBuffer, PinnedBuffer

T = TypeVar("T")
R = TypeVar("R")


# --------------------------------------------------------------------------- pure scheduling
class SlotScheduler:
    """Which slot to fill and which to collect next: free slots round-robin, collection FIFO."""

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

    def release(self, slot: int) -> None:
        """Give back an acquired slot that was not submitted (its preprocessing failed)."""
        self._free.appendleft(slot)

    def submitted(self, slot: int) -> int:
        """Record that an acquired ``slot`` was submitted; returns its sequence number."""
        self._in_flight.append((slot, self._next_seq))
        self._next_seq += 1
        return self._next_seq - 1

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
    """Keep every slot busy: ``fill(slot, item) -> token``, ``submit(slot, token)``, ``collect(slot, token)``.

    Results come out in the order of ``items``. A slot is refilled only after its
    result was yielded, so a consumer holding a result past the next iteration
    must copy it if it views slot memory. An item that is :data:`~vggedge.runtime.base.IDLE`
    (the source has no next batch yet) fills nothing: the oldest batch in flight is
    collected and yielded instead of waiting for the slots to fill up.
    """
    tokens: dict[int, Any] = {}

    def oldest() -> R:
        slot, _ = scheduler.next_to_collect()
        result = collect(slot, tokens.pop(slot))
        scheduler.collected()
        return result

    for item in items:
        if item is IDLE:
            if scheduler.in_flight:
                yield oldest()
            continue
        slot = scheduler.acquire()
        while slot is None:
            yield oldest()
            slot = scheduler.acquire()
        try:
            tokens[slot] = fill(slot, item)
            submit(slot, tokens[slot])
        except BaseException:
            tokens.pop(slot, None)
            scheduler.release(slot)
            raise
        scheduler.submitted(slot)
    while scheduler.in_flight:
        yield oldest()


# --------------------------------------------------------------------------- CUDA side
@dataclass(frozen=True)
class TensorSpec:
    """One I/O tensor: name, shape at the MAX batch (batch first) and dtype."""

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

    def seconds(self) -> dict[str, float]:
        """The contract's stage times in seconds: ``h2d``, ``compute``, ``d2h`` and their sum as ``infer``."""
        return {"h2d": self.h2d_ms / 1e3, "compute": self.compute_ms / 1e3, "d2h": self.d2h_ms / 1e3,
                "infer": self.total_ms / 1e3}


@dataclass
class Slot:
    """Everything one in-flight batch owns; ``device[name].ptr`` is the pointer to bind."""

    index: int
    stream: CudaStream
    host_inputs: dict[str, np.ndarray]
    host_outputs: dict[str, np.ndarray]
    device: dict[str, DeviceBuffer]
    events: dict[str, CudaEvent]
    batch: int = 0  # rows asked for
    rows: int = 0  # rows submitted (batch padded up to the minimum)
    state: dict[str, Any] = field(default_factory=dict)  # backend's per-slot state


#: execute(slot, batch_n) enqueues the model on slot.stream and must not wait for it.
Execute = Callable[[Slot, int], None]
EVENTS = ("h2d_start", "h2d_end", "compute_end", "d2h_end")


class Pipeline:
    """N slots of buffers, streams and events around a runner's ``execute`` callable.

    Buffers are sized for the inputs' first dimension (the max batch). A batch of
    ``n`` rows below ``min_batch`` (a fixed-batch model, a profile minimum) is
    padded on submission: ``max(n, min_batch)`` rows run, ``n`` come back. A batch
    above the max raises InputError naming ``range_source``.
    """

    def __init__(self, ctx: CudaContext, inputs: list[TensorSpec], outputs: list[TensorSpec], execute: Execute,
                 num_slots: int = 2, *, min_batch: int = 1, range_source: str = "the pipeline's buffers") -> None:
        if num_slots < 1:
            raise VggEdgeError(f"num_slots must be at least 1, got {num_slots}")
        self.ctx, self.inputs, self.outputs, self.execute = ctx, inputs, outputs, execute
        self.num_slots, self.min_batch, self.range_source = num_slots, min_batch, range_source
        self.slots: list[Slot] = []
        self._owned: list[Any] = []

    @property
    def max_batch(self) -> int:
        return int(self.inputs[0].shape[0])

    def check_batch(self, n: int) -> None:
        """InputError naming the allowed range when ``n`` rows cannot be submitted (padding covers the minimum)."""
        if not 1 <= n <= self.max_batch:
            raise InputError(f"batch of {n} is outside 1..{self.max_batch}, the range {self.range_source} allow")

    def allocate(self) -> "Pipeline":
        """Allocate every slot's buffers, stream and events once."""
        with self.ctx:
            try:
                self.slots = [self._make_slot(index) for index in range(self.num_slots)]
            except BaseException:
                self._free_owned()
                raise
        return self

    def _make_slot(self, index: int) -> Slot:
        def keep(resource):
            self._owned.append(resource)
            return resource

        stream = keep(CudaStream())
        host_in = {t.name: keep(PinnedBuffer(t.shape, t.dtype)).array for t in self.inputs}
        host_out = {t.name: keep(PinnedBuffer(t.shape, t.dtype)).array for t in self.outputs}
        device = {t.name: keep(DeviceBuffer(t.nbytes)) for t in [*self.inputs, *self.outputs]}
        return Slot(index, stream, host_in, host_out, device, {name: keep(CudaEvent()) for name in EVENTS})

    def wait_all(self) -> None:
        """Block until every slot's stream is idle."""
        if not self.slots or not self.ctx.is_open:
            return
        with self.ctx:
            for slot in self.slots:
                slot.stream.synchronize()

    def free(self) -> None:
        """Wait for all work in the context (not only our streams), then free every slot (safe twice)."""
        if self._owned and self.ctx.is_open:
            with self.ctx:
                try:
                    self.ctx.synchronize()
                finally:
                    self._free_owned()
        self.slots, self._owned = [], []

    def _free_owned(self) -> None:
        for resource in reversed(self._owned):
            resource.free()
        self.slots, self._owned = [], []

    def submit(self, slot: int, batch_n: int, *, on_device: bool = False) -> None:
        """Enqueue H2D copy, execution and D2H copy of ``batch_n`` rows (padded to the minimum); returns at once.

        ``on_device=True``: the inputs were already written into the slot's device buffers on
        its stream (GPU decoding and preprocessing), so no host copy is made; padding rows
        then hold whatever the buffer held (computed and dropped).
        """
        self.check_batch(batch_n)
        s = self.slots[slot]
        rows = max(batch_n, self.min_batch)
        if rows > batch_n and not on_device:  # repeat the last real row: padding rows are computed and dropped
            for array in s.host_inputs.values():
                array[batch_n:rows] = array[batch_n - 1]
        s.batch, s.rows = batch_n, rows
        with self.ctx:
            s.events["h2d_start"].record(s.stream)
            if not on_device:
                for t in self.inputs:
                    s.device[t.name].upload_async(s.host_inputs[t.name][:rows], s.stream)
            s.events["h2d_end"].record(s.stream)
            self.execute(s, rows)
            s.events["compute_end"].record(s.stream)
            for t in self.outputs:
                s.device[t.name].download_async(s.host_outputs[t.name][:rows], s.stream)
            s.events["d2h_end"].record(s.stream)

    def collect(self, slot: int) -> tuple[dict[str, np.ndarray], StageTimes]:
        """Wait for a submitted slot: its ``batch`` output rows (views of pinned buffers; copy to keep) and times."""
        s = self.slots[slot]
        with self.ctx:
            s.stream.synchronize()
            ev = s.events
            times = StageTimes(ev["h2d_end"].elapsed_ms(ev["h2d_start"]), ev["compute_end"].elapsed_ms(ev["h2d_end"]),
                               ev["d2h_end"].elapsed_ms(ev["compute_end"]))
        return {name: array[:s.batch] for name, array in s.host_outputs.items()}, times

    def copy_feed(self, feed: Mapping[str, np.ndarray] | np.ndarray, inputs: dict[str, np.ndarray]) -> int:
        """Copy a ``{name: array}`` feed (or a lone array for one input) into pinned inputs; returns the batch."""
        if not isinstance(feed, Mapping):
            if len(inputs) != 1:
                raise InputError(f"the model has inputs {sorted(inputs)}; pass a {{name: array}} feed")
            feed = {next(iter(inputs)): feed}
        sizes = set()
        for name, target in inputs.items():
            array = np.asarray(feed[name]) if name in feed else None
            if array is None or array.dtype != target.dtype or array.shape[1:] != target.shape[1:] \
                    or array.ndim != target.ndim:
                got = "nothing" if array is None else f"{array.dtype} {array.shape}"
                raise InputError(f"input {name!r}: got {got}, expected {target.dtype} (N, "
                                 f"{', '.join(map(str, target.shape[1:]))})")
            self.check_batch(array.shape[0])
            target[:array.shape[0]] = array
            sizes.add(array.shape[0])
        if len(sizes) != 1:
            raise InputError(f"inputs have different batch sizes {sorted(sizes)}")
        return sizes.pop()
