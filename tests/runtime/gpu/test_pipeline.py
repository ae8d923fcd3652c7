"""The slot pipeline without a GPU.

First the pure scheduler (SlotScheduler + drive): order kept, every slot used,
never more in flight than slots, drained at the end. Then Pipeline over the fake
``pycuda.driver`` of ``gpu_fakes`` (device memory is host memory, work runs at
enqueue time): our calls, buffer handling, padding and teardown order.
"""
from __future__ import annotations

import numpy as np
import pytest

from gpu_fakes import IN, OUT, FakeDriver, batches, double_plus_one, reference

from vggedge.errors import InputError, VggEdgeError
from vggedge.runtime.base import IDLE
from vggedge.runtime.gpu import cuda as vcuda
from vggedge.runtime.gpu.pipeline import Pipeline, SlotScheduler, drive


# --------------------------------------------------------------------------- pure scheduler
class Recorder:
    """fill/submit/collect callbacks that record what drive() does."""

    def __init__(self, num_slots: int) -> None:
        self.num_slots = num_slots
        self.in_flight: dict[int, int] = {}
        self.max_in_flight = 0
        self.slots_used: list[int] = []
        self.log: list[tuple[str, int, int]] = []

    def fill(self, slot: int, item: int) -> int:
        assert slot not in self.in_flight, "a slot was refilled while in flight"
        self.slots_used.append(slot)
        self.log.append(("fill", slot, item))
        return item

    def submit(self, slot: int, token: int) -> None:
        self.in_flight[slot] = token
        self.max_in_flight = max(self.max_in_flight, len(self.in_flight))
        assert len(self.in_flight) <= self.num_slots

    def collect(self, slot: int, token: int) -> int:
        assert self.in_flight.pop(slot) == token
        self.log.append(("collect", slot, token))
        return token * 10


@pytest.mark.parametrize("num_slots", [1, 2, 3, 5])
@pytest.mark.parametrize("count", [0, 1, 2, 7, 20])
def test_order_slots_in_flight_and_drain(num_slots: int, count: int) -> None:
    rec = Recorder(num_slots)
    scheduler = SlotScheduler(num_slots)
    results = list(drive(range(count), scheduler, rec.fill, rec.submit, rec.collect))
    assert results == [i * 10 for i in range(count)]  # input order kept
    assert scheduler.in_flight == 0 and not rec.in_flight  # final drain
    assert rec.max_in_flight == min(num_slots, count)  # never more than slots; all busy when possible
    assert sorted(set(rec.slots_used)) == list(range(min(num_slots, count)))  # every slot used
    assert rec.slots_used == [i % num_slots for i in range(count)]  # round robin


def test_next_batch_is_filled_while_others_are_in_flight() -> None:
    rec = Recorder(3)
    consumed: list[int] = []

    def items():
        for i in range(10):
            consumed.append(i)
            yield i

    gen = drive(items(), SlotScheduler(3), rec.fill, rec.submit, rec.collect)
    assert next(gen) == 0
    assert consumed == [0, 1, 2, 3]  # three submitted before the first collect; the fourth waits for a slot
    assert rec.log[:4] == [("fill", 0, 0), ("fill", 1, 1), ("fill", 2, 2), ("collect", 0, 0)]
    assert list(gen) == [i * 10 for i in range(1, 10)]


def test_idle_hands_back_the_oldest_batch_instead_of_waiting_for_more_input() -> None:
    """A source with nothing ready yields IDLE: the oldest batch in flight is collected at once (one per IDLE,
    in order); with nothing in flight IDLE is a no-op. Without it, batch 0 would wait for a third item."""
    rec = Recorder(3)
    items = [IDLE, 0, 1, IDLE, 2, IDLE, IDLE, IDLE, 3]
    results = list(drive(items, SlotScheduler(3), rec.fill, rec.submit, rec.collect))
    assert results == [0, 10, 20, 30]
    assert rec.log == [("fill", 0, 0), ("fill", 1, 1), ("collect", 0, 0), ("fill", 2, 2), ("collect", 1, 1),
                       ("collect", 2, 2), ("fill", 0, 3), ("collect", 0, 3)]


def test_failed_fill_releases_the_slot() -> None:
    scheduler = SlotScheduler(2)

    def fill(slot: int, item: int) -> int:
        if item == 1:
            raise ValueError("bad image")
        return item

    gen = drive(range(3), scheduler, fill, lambda s, t: None, lambda s, t: t)
    with pytest.raises(ValueError, match="bad image"):
        list(gen)
    assert scheduler.in_flight == 1 and scheduler.acquire() == 1  # the failed slot went back


def test_scheduler_errors() -> None:
    with pytest.raises(VggEdgeError, match="at least 1 slot"):
        SlotScheduler(0)
    scheduler = SlotScheduler(2)
    assert scheduler.next_to_collect() is None
    with pytest.raises(VggEdgeError, match="nothing in flight"):
        scheduler.collected()
    first, second = scheduler.acquire(), scheduler.acquire()
    assert (first, second, scheduler.acquire()) == (0, 1, None)
    assert scheduler.submitted(second) == 0 and scheduler.submitted(first) == 1
    assert scheduler.collected() == (1, 0)  # oldest submission first, whatever its slot


# --------------------------------------------------------------------------- Pipeline on a fake pycuda
def test_pipeline_slots_round_trip(fake_cuda: FakeDriver) -> None:
    ctx = vcuda.CudaContext(0).open()
    pipe = Pipeline(ctx, IN, OUT, double_plus_one(fake_cuda, IN, OUT), num_slots=3).allocate()
    data = batches()
    for i, batch in enumerate(data):
        slot = i % 3
        pipe.copy_feed(batch, pipe.slots[slot].host_inputs)
        pipe.submit(slot, len(batch))
        outputs, times = pipe.collect(slot)
        np.testing.assert_allclose(outputs["scores"], reference(batch), rtol=1e-6)
        assert times.total_ms >= 0 and set(times.seconds()) == {"h2d", "compute", "d2h", "infer"}
    assert fake_cuda.contexts_pushed == 0  # every push popped
    assert fake_cuda.stream_flags == [1, 1, 1]  # non-blocking streams: ordering is by events only
    pipe.free()
    assert len(fake_cuda.freed) == 3 * 2 and not pipe.slots
    ctx.release()


def test_pipeline_free_synchronises_the_context_before_freeing(fake_cuda: FakeDriver) -> None:
    pipe = Pipeline(vcuda.CudaContext(0).open(), IN, OUT, double_plus_one(fake_cuda, IN, OUT)).allocate()
    pipe.free()
    assert fake_cuda.log[0] == "synchronize" and fake_cuda.log[1:] == ["free"] * 4  # not only the slot streams


def test_pipeline_pads_a_short_batch_to_the_minimum(fake_cuda: FakeDriver) -> None:
    seen: list[int] = []
    execute = double_plus_one(fake_cuda, IN, OUT)
    pipe = Pipeline(vcuda.CudaContext(0).open(), IN, OUT, lambda slot, n: seen.append(n) or execute(slot, n),
                    min_batch=3).allocate()
    x = batches((1,))[0]
    n = pipe.copy_feed(x, pipe.slots[0].host_inputs)
    pipe.submit(0, n)
    outputs, _ = pipe.collect(0)
    assert seen == [3] and outputs["scores"].shape == (1, 5)  # max(n, min) rows ran, n came back
    np.testing.assert_allclose(outputs["scores"], reference(x), rtol=1e-6)


def test_pipeline_checks_feeds(fake_cuda: FakeDriver) -> None:
    pipe = Pipeline(vcuda.CudaContext(0).open(), IN, OUT, double_plus_one(fake_cuda, IN, OUT),
                    min_batch=1, range_source="the test's profile").allocate()
    inputs = pipe.slots[0].host_inputs
    with pytest.raises(InputError, match=r"batch of 5 is outside 1\.\.4, the range the test's profile allow"):
        pipe.copy_feed(np.zeros((5, 3, 2, 2), np.float32), inputs)
    with pytest.raises(InputError, match="dtype|float64"):
        pipe.copy_feed(np.zeros((2, 3, 2, 2)), inputs)
    with pytest.raises(InputError, match="'images'"):
        pipe.copy_feed({"other": np.zeros((2, 3, 2, 2), np.float32)}, inputs)
    with pytest.raises(InputError, match="outside 1"):
        pipe.submit(0, 0)
