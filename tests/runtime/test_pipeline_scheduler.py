"""The overlapped pipeline without a GPU.

First the pure scheduler (SlotScheduler + drive): order kept, every slot used,
never more in flight than slots, drained at the end. Then Pipeline, PipelineRunner
and TrtRunner over a fake ``pycuda.driver`` and a fake ``tensorrt`` whose "device
memory" is host memory and whose work runs at enqueue time: that checks our
calls, buffer handling and result routing, not real concurrency.
"""
from __future__ import annotations

import itertools
import sys
import types
from types import SimpleNamespace

import numpy as np
import pytest

from vggedge.errors import InputError, VggEdgeError
from vggedge.runtime import cuda as vcuda
from vggedge.runtime.pipeline import Pipeline, PipelineRunner, SlotScheduler, TensorSpec, drive


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


# --------------------------------------------------------------------------- fake pycuda.driver
class _Pinned(bytearray):
    def free(self) -> None:
        self.freed = True


class _FakeDriver(types.ModuleType):
    """Just the pycuda.driver surface vggedge uses; device memory is a dict of bytearrays."""

    class Error(Exception):
        pass

    class MemoryError(Error):  # noqa: A001 - mirrors pycuda's name
        pass

    def __init__(self) -> None:
        super().__init__("pycuda.driver")
        self.memory: dict[int, bytearray] = {}
        self.freed: list[int] = []
        self._next = itertools.count(0x10000, 0x10000)
        self.waits = 0
        self.contexts_pushed = 0
        driver = self

        class Context:
            def push(self) -> None:
                driver.contexts_pushed += 1

            @staticmethod
            def pop() -> None:
                driver.contexts_pushed -= 1

            @staticmethod
            def synchronize() -> None:
                pass

            def detach(self) -> None:
                driver.detached = True

        class Device:
            def __init__(self, index: int) -> None:
                self.index = index

            @staticmethod
            def count() -> int:
                return 1

            def retain_primary_context(self) -> Context:
                return Context()

        class Stream:
            handles = itertools.count(1)

            def __init__(self) -> None:
                self.handle = next(Stream.handles)

            def synchronize(self) -> None:
                pass

            def is_done(self) -> bool:
                return True

            def wait_for_event(self, event) -> None:
                driver.waits += 1

        class Event:
            clock = itertools.count()

            def record(self, stream=None):
                self.t = next(Event.clock)
                return self

            def synchronize(self):
                return self

            def time_since(self, start) -> float:
                return float(self.t - start.t)

        self.Context, self.Device, self.Stream, self.Event = Context, Device, Stream, Event

    def init(self) -> None:
        pass

    def pagelocked_empty(self, shape, dtype):
        dtype = np.dtype(dtype)
        return np.ndarray(shape, dtype, buffer=_Pinned(int(np.prod(shape)) * dtype.itemsize))

    def mem_alloc(self, nbytes: int):
        address = next(self._next)
        self.memory[address] = bytearray(nbytes)
        return _Alloc(self, address)

    def view(self, ptr: int, dtype, shape) -> np.ndarray:
        """The fake device memory at ``ptr`` as an array (what a kernel would see)."""
        base = max(a for a in self.memory if a <= ptr)
        count = int(np.prod(shape))
        return np.frombuffer(self.memory[base], dtype, count, ptr - base).reshape(shape)

    def memcpy_htod_async(self, dest: int, src: np.ndarray, stream=None) -> None:
        base = max(a for a in self.memory if a <= dest)
        self.memory[base][dest - base:dest - base + src.nbytes] = src.tobytes()

    def memcpy_dtoh_async(self, dest: np.ndarray, src: int, stream=None) -> None:
        dest.reshape(-1).view(np.uint8)[:] = np.frombuffer(bytes(self.view(src, np.uint8, (dest.nbytes,))), np.uint8)


class _Alloc:
    def __init__(self, driver: _FakeDriver, address: int) -> None:
        self.driver, self.address = driver, address

    def __int__(self) -> int:
        return self.address

    def free(self) -> None:
        self.driver.freed.append(self.address)


@pytest.fixture()
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> _FakeDriver:
    driver = _FakeDriver()
    package = types.ModuleType("pycuda")
    package.driver = driver
    monkeypatch.setitem(sys.modules, "pycuda", package)
    monkeypatch.setitem(sys.modules, "pycuda.driver", driver)
    monkeypatch.setattr(vcuda, "cuda_available", lambda: None)
    return driver


def double_plus_one(driver: _FakeDriver, inputs: list[TensorSpec], outputs: list[TensorSpec]):
    """An execute callable: out[b, j] = 2 * in[b].sum() + j, on the fake device buffers."""

    def execute(slot, n: int) -> None:
        x = driver.view(slot.device[inputs[0].name].ptr, inputs[0].dtype, (n, *inputs[0].shape[1:]))
        y = driver.view(slot.device[outputs[0].name].ptr, outputs[0].dtype, (n, *outputs[0].shape[1:]))
        y[...] = 2 * x.reshape(n, -1).sum(axis=1, keepdims=True) + np.arange(y.shape[1])

    return execute


def reference(batch: np.ndarray, width: int = 5) -> np.ndarray:
    return 2 * batch.reshape(len(batch), -1).sum(axis=1, keepdims=True) + np.arange(width, dtype=np.float32)


IN = [TensorSpec("images", (4, 3, 2, 2), np.dtype(np.float32))]
OUT = [TensorSpec("scores", (4, 5), np.dtype(np.float32))]


def batches(sizes=(1, 4, 2, 3, 4, 1)) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.standard_normal((n, 3, 2, 2)).astype(np.float32) for n in sizes]


def test_pipeline_overlapped_equals_synchronous(fake_cuda: _FakeDriver) -> None:
    ctx = vcuda.CudaContext(0).open()
    pipe = Pipeline(ctx, IN, OUT, double_plus_one(fake_cuda, IN, OUT), num_slots=3).allocate()
    data = batches()
    overlapped = list(pipe.run(data))
    synchronous = list(pipe.run(data, overlap=False))
    assert [r.slot for r in overlapped] == [0, 1, 2, 0, 1, 2] and {r.slot for r in synchronous} == {0}
    for batch, a, b in zip(data, overlapped, synchronous):
        np.testing.assert_array_equal(a.outputs["scores"], b.outputs["scores"])
        np.testing.assert_allclose(a.outputs["scores"], reference(batch), rtol=1e-6)
        assert a.batch == len(batch) and a.tag is batch and a.times.total_ms >= 0
    assert fake_cuda.contexts_pushed == 0  # every push popped
    pipe.free()
    assert len(fake_cuda.freed) == 3 * 2 and not pipe.slots
    ctx.release()


def test_pipeline_checks_feeds(fake_cuda: _FakeDriver) -> None:
    pipe = Pipeline(vcuda.CudaContext(0).open(), IN, OUT, double_plus_one(fake_cuda, IN, OUT),
                    min_batch=1, range_source="the test's profile").allocate()
    with pytest.raises(InputError, match=r"batch of 5 is outside 1\.\.4, the range the test's profile allow"):
        list(pipe.run([np.zeros((5, 3, 2, 2), np.float32)]))
    with pytest.raises(InputError, match="dtype|float64"):
        list(pipe.run([np.zeros((2, 3, 2, 2))]))
    with pytest.raises(InputError, match="'images'"):
        list(pipe.run([{"other": np.zeros((2, 3, 2, 2), np.float32)}]))
    sizes = []
    results = list(pipe.run(range(3), lambda i, inputs: sizes.append(i) or inputs["images"].fill(i) or i + 1))
    assert sizes == [0, 1, 2] and [r.batch for r in results] == [1, 2, 3]
    np.testing.assert_allclose(results[2].outputs["scores"][:, 0], [2 * 2 * 12] * 3)


class _FakeRunner(PipelineRunner):
    name = "fake-gpu"

    def __init__(self, driver: _FakeDriver) -> None:
        super().__init__(num_slots=2)
        self.driver, self.closed = driver, False

    def _open_backend(self):
        self._run = double_plus_one(self.driver, IN, OUT)
        return IN, OUT, 1

    def _execute(self, slot, n: int) -> None:
        self._run(slot, n)

    def _close_backend(self) -> None:
        self.closed = True

    def _input_metadata(self):
        from vggedge.runtime.base import TensorMeta

        return {"images": TensorMeta("images", np.dtype(np.float32), (None, 3, 2, 2))}


def test_pipeline_runner_infer_and_run(fake_cuda: _FakeDriver) -> None:
    data = batches()
    with _FakeRunner(fake_cuda) as runner:
        out = runner.infer({"images": data[1]})
        np.testing.assert_allclose(out["scores"], reference(data[1]), rtol=1e-6)
        assert runner.last_times is not None
        streamed = [r.outputs["scores"] for r in runner.run(data)]
        assert all(np.allclose(s, reference(b)) for s, b in zip(streamed, data))
        unfinished = runner.run(data)
        next(unfinished)
        with pytest.raises(VggEdgeError, match="while a run\\(\\) is in progress"):
            runner.infer({"images": data[0]})
        unfinished.close()  # stopping early waits for the slots still in flight
        assert runner.pipeline.running == 0 and runner.infer({"images": data[0]})["scores"].shape == (1, 5)
    assert runner.closed and fake_cuda.detached and not runner.active


# --------------------------------------------------------------------------- TrtRunner on fakes
class _TrtType:
    def __init__(self, name: str) -> None:
        self.name = name


def fake_tensorrt(version: str, driver: _FakeDriver, io_dtype: str = "FLOAT") -> types.ModuleType:
    """A tensorrt module whose engine computes double_plus_one on the fake device memory."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.TensorIOMode = SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")
    np_dtype = np.float32 if io_dtype == "FLOAT" else np.float16

    class Context:
        def __init__(self) -> None:
            self.shapes: dict[str, tuple] = {}
            self.addresses: dict[str, int] = {}
            self.shape_calls = 0

        def set_input_shape(self, name: str, shape) -> bool:
            self.shape_calls += 1
            self.shapes[name] = tuple(shape)
            return 1 <= shape[0] <= 4

        def get_tensor_shape(self, name: str):
            n = self.shapes["images"][0]
            return (n, 3, 2, 2) if name == "images" else (n, 5)

        def set_tensor_address(self, name: str, ptr: int) -> bool:
            self.addresses[name] = ptr
            return True

        def execute_async_v3(self, stream_handle: int) -> bool:
            n = self.shapes["images"][0]
            x = driver.view(self.addresses["images"], np_dtype, (n, 3, 2, 2)).astype(np.float32)
            y = driver.view(self.addresses["scores"], np_dtype, (n, 5))
            y[...] = reference(x)
            return True

    class Engine:
        num_io_tensors = 2
        contexts: list = []

        def get_tensor_name(self, i: int) -> str:
            return ("images", "scores")[i]

        def get_tensor_mode(self, name: str) -> str:
            return "INPUT" if name == "images" else "OUTPUT"

        def get_tensor_dtype(self, name: str) -> _TrtType:
            return _TrtType(io_dtype)

        def get_tensor_shape(self, name: str):
            return (-1, 3, 2, 2) if name == "images" else (-1, 5)

        def get_tensor_profile_shape(self, name: str, profile: int):
            assert profile == 0
            return [(1, 3, 2, 2), (2, 3, 2, 2), (4, 3, 2, 2)]

        def create_execution_context(self) -> Context:
            self.contexts.append(Context())
            return self.contexts[-1]

    trt.engine = Engine()
    return trt


@pytest.fixture()
def trt_env(fake_cuda: _FakeDriver, monkeypatch: pytest.MonkeyPatch):
    from vggedge.engine import build, identity

    def make(version: str, io_dtype: str = "FLOAT"):
        trt = fake_tensorrt(version, fake_cuda, io_dtype)
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        loaded = SimpleNamespace(engine=trt.engine, identity=SimpleNamespace(precision="fp32"), runtime=None,
                                 logger=SimpleNamespace(messages=["[WARNING] fake"]))
        monkeypatch.setattr(build, "load_engine", lambda plan, **kw: loaded)
        monkeypatch.setattr(identity, "gpu_identity", lambda device=0: ("Fake GPU", "9.0"))
        return trt

    return make


@pytest.mark.parametrize("version, contexts", [("10.3.0", 2), ("8.5.2", 1)])
def test_trt_runner_contexts_and_results(trt_env, fake_cuda: _FakeDriver, version: str, contexts: int) -> None:
    from vggedge.runtime.trt import TrtRunner

    trt = trt_env(version)
    data = batches()
    with TrtRunner("model.plan", num_slots=2) as runner:
        assert len(trt.engine.contexts) == contexts
        meta = runner.input_metadata()["images"]
        assert meta.shape == (None, 3, 2, 2) and meta.dtype == np.float32
        assert runner.pipeline.outputs[0].shape == (4, 5)  # sized for the profile's max batch
        streamed = list(runner.run(data))
        assert [r.batch for r in streamed] == [len(b) for b in data]
        for batch, result in zip(data, streamed):
            np.testing.assert_allclose(result.outputs["scores"], reference(batch), rtol=1e-6)
        np.testing.assert_allclose(runner.infer({"images": data[0]})["scores"], reference(data[0]), rtol=1e-6)
        with pytest.raises(InputError, match=r"outside 1\.\.4.*optimization profile"):
            runner.infer({"images": np.zeros((5, 3, 2, 2), np.float32)})
        assert ("shared" in runner.describe()) == (contexts == 1)
    if contexts == 1:
        assert fake_cuda.waits > 0  # each execution waited for the previous one on the GPU


def test_trt_runner_fp16_io_and_failed_enqueue(trt_env, fake_cuda: _FakeDriver) -> None:
    from vggedge.runtime.cuda import CudaError
    from vggedge.runtime.trt import TrtRunner

    trt = trt_env("10.3.0", io_dtype="HALF")
    x = batches((2,))[0].astype(np.float16)
    with TrtRunner("model.plan", num_slots=1) as runner:
        assert runner.input_metadata()["images"].dtype == np.float16
        np.testing.assert_allclose(runner.infer({"images": x})["scores"], reference(x.astype(np.float32)),
                                   rtol=1e-2)
        trt.engine.contexts[0].execute_async_v3 = lambda handle: False
        with pytest.raises(CudaError, match="execute_async_v3 returned failure.*fake"):
            runner.infer({"images": x})


def test_trt_io_helpers_reject_what_vggedge_cannot_run() -> None:
    from vggedge.errors import ModelError
    from vggedge.runtime.trt import IoTensor, batch_range, numpy_dtype

    assert numpy_dtype(_TrtType("HALF")) == np.float16
    with pytest.raises(ModelError, match="BF16"):
        numpy_dtype(_TrtType("BF16"), "images")
    a = IoTensor("a", True, np.dtype(np.float32), (-1, 3), ((1, 3), (2, 3), (8, 3)))
    b = IoTensor("b", True, np.dtype(np.float32), (-1, 3), ((2, 3), (2, 3), (8, 3)))
    assert batch_range([a]) == (1, 8)
    assert batch_range([IoTensor("s", True, np.dtype(np.float32), (4, 3), a.profile)]) == (4, 4)
    with pytest.raises(ModelError, match="disagree"):
        batch_range([a, b])
