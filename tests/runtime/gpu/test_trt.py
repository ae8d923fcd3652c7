"""TrtRunner over the fake pycuda and tensorrt of ``gpu_fakes``."""
from __future__ import annotations

import numpy as np
import pytest
from gpu_fakes import FakeDriver, TrtType, batches, reference

from vggedge.errors import ConfigError, InputError, ModelError
from vggedge.runtime.base import RunnerOptions
from vggedge.runtime.gpu.cuda import CudaError
from vggedge.runtime.gpu.trt import IoTensor, TrtRunner, batch_range, numpy_dtype


@pytest.mark.parametrize("version, contexts", [("10.3.0", 2), ("8.5.2", 1)])
def test_trt_runner_contexts_and_results(trt_env, fake_cuda: FakeDriver, version: str, contexts: int) -> None:
    trt = trt_env(version)
    data = batches()
    with TrtRunner("model.plan", RunnerOptions(slots=2, max_batch=4)) as runner:
        assert len(trt.engine.contexts) == contexts
        meta = runner.input_metadata()["images"]
        assert meta.shape == (None, 3, 2, 2) and meta.dtype == np.float32
        assert runner.pipeline.outputs[0].shape == (4, 5)  # sized for the profile's max batch
        assert runner.batch_range() == (1, 4)
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


def test_trt_runner_refuses_a_max_batch_beyond_the_profile(trt_env, fake_cuda: FakeDriver) -> None:
    trt_env("10.3.0", profile=(1, 2, 4))
    runner = TrtRunner("model.plan", RunnerOptions(max_batch=16))
    with pytest.raises(ConfigError, match=r"up to 16 .*profile takes 1\.\.4.*--batch 1,8,16"):
        runner.activate()
    assert not runner.active and fake_cuda.contexts_pushed == 0
    with TrtRunner("model.plan") as runner:  # no options: the profile decides
        assert runner.batch_range() == (1, 4)


def test_trt_runner_pads_a_short_last_batch_to_the_profile_minimum(trt_env, fake_cuda: FakeDriver) -> None:
    trt = trt_env("10.3.0", profile=(2, 4, 4))
    data = batches((4, 1))
    with TrtRunner("model.plan", RunnerOptions(max_batch=4, slots=1)) as runner:
        results = list(runner.run(data))
    assert [r.batch for r in results] == [4, 1]
    assert trt.engine.contexts[0].shapes["images"][0] == 2  # the short batch ran as 2 rows
    np.testing.assert_allclose(results[1].outputs["scores"], reference(data[1]), rtol=1e-6)


def test_trt_runner_fp16_io_and_failed_enqueue(trt_env, fake_cuda: FakeDriver) -> None:
    trt = trt_env("10.3.0", io_dtype="HALF")
    x = batches((2,))[0].astype(np.float16)
    with TrtRunner("model.plan", RunnerOptions(slots=1, max_batch=4)) as runner:
        assert runner.input_metadata()["images"].dtype == np.float16
        np.testing.assert_allclose(runner.infer({"images": x})["scores"], reference(x.astype(np.float32)),
                                   rtol=1e-2)
        trt.engine.contexts[0].execute_async_v3 = lambda handle: False
        with pytest.raises(CudaError, match="execute_async_v3 returned failure.*fake"):
            runner.infer({"images": x})


def test_trt_io_helpers_reject_what_vggedge_cannot_run() -> None:
    assert numpy_dtype(TrtType("HALF")) == np.float16
    with pytest.raises(ModelError, match="BF16"):
        numpy_dtype(TrtType("BF16"), "images")
    a = IoTensor("a", True, np.dtype(np.float32), (-1, 3), ((1, 3), (2, 3), (8, 3)))
    b = IoTensor("b", True, np.dtype(np.float32), (-1, 3), ((2, 3), (2, 3), (8, 3)))
    assert batch_range([a]) == (1, 8)
    assert batch_range([IoTensor("s", True, np.dtype(np.float32), (4, 3), a.profile)]) == (4, 4)
    with pytest.raises(ModelError, match="disagree"):
        batch_range([a, b])


@pytest.mark.parametrize("version", ["10.3.0", "8.5.2"])
def test_trt_runner_takes_inputs_already_on_the_device(trt_env, fake_cuda: FakeDriver, version: str) -> None:
    """run_on_device (GPU decode + preprocessing kernel) works on TensorRT's buffers too: no host copy of inputs."""
    trt_env(version)
    data = batches((2, 4, 1))

    def fill(batch: np.ndarray, slot) -> int:  # stands in for DeviceImageFill: writes the device buffer itself
        fake_cuda.view(slot.device["images"].ptr, np.float32, batch.shape)[...] = batch
        return len(batch)

    with TrtRunner("model.plan", RunnerOptions(slots=2, max_batch=4)) as runner:
        inputs = {slot.device["images"].ptr for slot in runner.pipeline.slots}
        copied: list[int] = []
        real = fake_cuda.memcpy_htod_async
        fake_cuda.memcpy_htod_async = lambda dest, src, stream=None: (copied.append(dest), real(dest, src, stream))
        results = list(runner.run_on_device(data, fill))
    assert not copied and inputs
    for batch, result in zip(data, results):
        np.testing.assert_allclose(result.outputs["scores"], reference(batch), rtol=1e-6)
