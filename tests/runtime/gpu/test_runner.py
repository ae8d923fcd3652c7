"""PipelineRunner, the runner contract on the slots, over the fake pycuda of ``gpu_fakes``."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from gpu_fakes import IN, OUT, FakeDriver, batches, double_plus_one, reference

from vggedge.errors import InputError, VggEdgeError
from vggedge.runtime.base import BatchOutput, RunnerOptions, TensorMeta
from vggedge.runtime.gpu.runner import PipelineRunner


class FakeRunner(PipelineRunner):
    name = "fake-gpu"

    def __init__(self, driver: FakeDriver, options: RunnerOptions | None = None, *, min_batch: int = 1) -> None:
        super().__init__(options)
        self.driver, self.closed, self.min_batch, self.executed = driver, False, min_batch, []

    def _open_backend(self):
        self._compute = double_plus_one(self.driver, IN, OUT)
        return IN, OUT, self.min_batch

    def _execute(self, slot, n: int) -> None:
        self.executed.append(n)
        self._compute(slot, n)

    def _close_backend(self) -> None:
        self.closed = True
        self.driver.log.append("backend closed")

    def _input_metadata(self):
        return {"images": TensorMeta("images", np.dtype(np.float32), (None, 3, 2, 2))}


def test_options_drive_slots_and_device(fake_cuda: FakeDriver) -> None:
    with FakeRunner(fake_cuda, RunnerOptions(slots=3, device=0)) as runner:
        assert len(runner.pipeline.slots) == 3 and runner.batch_range() == (1, 4)
        assert runner.report()["slots"] == 3


def test_run_yields_batch_outputs_in_order_with_times_in_seconds(fake_cuda: FakeDriver) -> None:
    data = batches()
    with FakeRunner(fake_cuda, RunnerOptions(slots=2)) as runner:
        results = list(runner.run(data))
        assert all(isinstance(r, BatchOutput) for r in results)
        assert [r.tag is b for r, b in zip(results, data)] == [True] * len(data)
        for batch, result in zip(data, results):
            assert result.batch == len(batch) and result.outputs["scores"].shape == (len(batch), 5)
            np.testing.assert_allclose(result.outputs["scores"], reference(batch), rtol=1e-6)
            assert set(result.times) == {"prepare", "h2d", "compute", "d2h", "infer"}
            assert result.times["infer"] == pytest.approx(result.times["h2d"] + result.times["compute"]
                                                          + result.times["d2h"])
        assert set(runner.last_times) == {"prepare", "h2d", "compute", "d2h", "infer"}
        runner.infer({"images": data[0]})
        assert set(runner.last_times) == {"h2d", "compute", "d2h", "infer"}


def test_run_with_prepare_and_without_copies(fake_cuda: FakeDriver) -> None:
    def prepare(i: int, inputs: dict[str, np.ndarray]) -> int:
        inputs["images"][:i + 1] = i
        return i + 1

    with FakeRunner(fake_cuda) as runner:
        results = [(r.batch, r.outputs["scores"][:, 0].tolist()) for r in runner.run(range(3), prepare, copy=False)]
    assert results == [(1, [0.0]), (2, [24.0] * 2), (3, [48.0] * 3)]


def test_short_batch_on_a_minimum_is_padded_not_refused(fake_cuda: FakeDriver) -> None:
    data = batches((4, 4, 1))
    with FakeRunner(fake_cuda, min_batch=4) as runner:
        results = list(runner.run(data))
    assert [r.batch for r in results] == [4, 4, 1] and runner.executed == [4, 4, 4]
    np.testing.assert_allclose(results[-1].outputs["scores"], reference(data[-1]), rtol=1e-6)


def test_second_run_is_refused_from_the_call(fake_cuda: FakeDriver) -> None:
    data = batches()
    with FakeRunner(fake_cuda) as runner:
        first = runner.run(data)  # not started yet: the slots are still claimed
        with pytest.raises(VggEdgeError, match="another run\\(\\) on this runner is active"):
            runner.run(data)
        with pytest.raises(VggEdgeError, match="while a run\\(\\) is in progress"):
            runner.infer({"images": data[0]})
        next(first)
        first.close()  # stopping early waits for the slots still in flight, then frees the run
        assert len(list(runner.run(data[:2]))) == 2
        assert runner.infer({"images": data[0]})["scores"].shape == (1, 5)


def test_run_refuses_to_start_while_infer_holds_the_slots(fake_cuda: FakeDriver) -> None:
    with FakeRunner(fake_cuda) as runner:
        runner._slots_lock.acquire()  # as an infer() in another thread would
        try:
            with pytest.raises(VggEdgeError, match="while infer\\(\\) runs in another thread"):
                next(runner.run(batches()))
        finally:
            runner._slots_lock.release()
        assert not runner._running


def test_batch_over_the_max_is_refused_clearly(fake_cuda: FakeDriver) -> None:
    with FakeRunner(fake_cuda) as runner:
        with pytest.raises(InputError, match=r"batch of 5 is outside 1\.\.4"):
            list(runner.run([np.zeros((5, 3, 2, 2), np.float32)]))


def test_deactivate_closes_the_backend_then_synchronises_then_frees(fake_cuda: FakeDriver) -> None:
    runner = FakeRunner(fake_cuda).activate()
    fake_cuda.log.clear()
    runner.deactivate()
    assert fake_cuda.log[:2] == ["backend closed", "synchronize"] and set(fake_cuda.log[2:]) <= {"free", "synchronize"}
    assert fake_cuda.log.count("free") == 2 * 2  # two slots, one input and one output device buffer each
    assert fake_cuda.contexts_pushed == 0 and fake_cuda.Context.get_current() is None


def test_primary_context_retained_once_and_never_detached(fake_cuda: FakeDriver) -> None:
    for _ in range(2):
        with FakeRunner(fake_cuda):
            pass
    other = threading.Thread(target=lambda: FakeRunner(fake_cuda).activate().deactivate())
    other.start()
    other.join()
    assert fake_cuda.retains == 1 and not fake_cuda.detached


def test_a_feed_fills_the_next_slot_while_one_is_in_flight_and_never_holds_a_lone_batch(fake_cuda: FakeDriver) -> None:
    """RunFeed on the slots (a Ray actor's concurrent calls): the second caller's batch is written into the
    free slot on the device before the first is collected, and each caller gets its own rows; a lone caller
    is handed back its batch at once (IDLE), not held until another arrives."""
    from vggedge.runtime.feed import RunFeed

    data, log = batches((2, 3)), []

    def fill(batch: np.ndarray, slot) -> int:
        if not log:  # the first batch waits until the second caller has queued its own
            deadline = time.monotonic() + 30
            while feed._queue.qsize() < 1 and time.monotonic() < deadline:
                time.sleep(0.001)
        log.append(f"fill {len(batch)}")
        fake_cuda.view(slot.device["images"].ptr, np.float32, batch.shape)[...] = batch
        return len(batch)

    def submit(i: int, item: np.ndarray) -> threading.Thread:
        thread = threading.Thread(target=lambda: results.setdefault(i, feed.submit(item)), daemon=True)
        thread.start()
        return thread

    results: dict[int, BatchOutput] = {}
    with FakeRunner(fake_cuda, RunnerOptions(slots=2)) as runner, RunFeed(runner, device_fill=fill) as feed:
        first = submit(0, data[0])
        deadline = time.monotonic() + 30
        while not feed._waiting and time.monotonic() < deadline:
            time.sleep(0.001)
        callers = [first, submit(1, data[1])]
        for caller in callers:
            caller.join(30)
        alone = submit(2, data[0])  # nobody else is coming: handed back without a second batch
        alone.join(30)
        assert not any(t.is_alive() for t in [*callers, alone]), "a caller never got its result"
    assert log == ["fill 2", "fill 3", "fill 2"] and feed.max_in_flight == 2
    for i, batch in ((0, data[0]), (1, data[1]), (2, data[0])):
        np.testing.assert_allclose(results[i].outputs["scores"], reference(batch), rtol=1e-6)
