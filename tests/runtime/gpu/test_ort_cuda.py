"""OrtCudaRunner over the fake pycuda and onnxruntime-gpu of ``gpu_fakes``."""
from __future__ import annotations

import numpy as np
import pytest
from gpu_fakes import FakeDriver, batches, reference

from vggedge.errors import BackendUnavailable, InputError
from vggedge.runtime.base import RunnerOptions
from vggedge.runtime.gpu.ort_cuda import OrtCudaRunner


def test_runs_on_our_stream_with_the_options_max_batch(ort_env, fake_cuda: FakeDriver) -> None:
    ort = ort_env()
    data = batches((1, 4, 3, 6, 2))
    with OrtCudaRunner(b"onnx", RunnerOptions(max_batch=6, slots=2)) as runner:
        assert runner.batch_range() == (1, 6)
        session = ort.sessions[0]()
        assert session.cuda_options["user_compute_stream"] == str(runner._compute.handle)
        for batch, result in zip(data, runner.run(data)):
            np.testing.assert_allclose(result.outputs["scores"], reference(batch), rtol=1e-6)
        with pytest.raises(InputError, match=r"outside 1\.\.6.*RunnerOptions\.max_batch"):
            runner.infer({"images": np.zeros((7, 3, 2, 2), np.float32)})
    assert fake_cuda.stream_flags and set(fake_cuda.stream_flags) == {1}  # every stream non-blocking


def test_refuses_a_build_that_ignores_our_stream(ort_env, fake_cuda: FakeDriver) -> None:
    ort_env(takes_stream=False)
    runner = OrtCudaRunner(b"onnx")
    with pytest.raises(BackendUnavailable, match="did not take our CUDA stream.*has_user_compute_stream='0'"):
        runner.activate()
    assert not runner.active and fake_cuda.contexts_pushed == 0


def test_refuses_a_build_that_rejects_the_stream_option(ort_env, fake_cuda: FakeDriver) -> None:
    ort_env(knows_stream=False)
    with pytest.raises(BackendUnavailable, match=r"cannot run on a given CUDA stream.*onnxruntime-gpu >= 1\.18"):
        OrtCudaRunner(b"onnx").activate()
    assert fake_cuda.contexts_pushed == 0


def test_teardown_drops_the_session_then_synchronises_then_frees(ort_env, fake_cuda: FakeDriver) -> None:
    ort_env()
    runner = OrtCudaRunner(b"onnx", RunnerOptions(max_batch=2, slots=2)).activate()
    runner.infer({"images": batches((2,))[0]})
    fake_cuda.log.clear()
    runner.deactivate()
    first_free = fake_cuda.log.index("free")
    assert fake_cuda.log.index("session dropped") < fake_cuda.log.index("synchronize") < first_free
    assert fake_cuda.contexts_pushed == 0


def test_fixed_batch_onnx_pads_a_short_batch(ort_env, fake_cuda: FakeDriver) -> None:
    ort_env(batch=4)
    data = batches((4, 3))
    with OrtCudaRunner(b"onnx", RunnerOptions(max_batch=4, slots=1)) as runner:
        assert runner.batch_range() == (4, 4)
        results = list(runner.run(data))
    assert [r.batch for r in results] == [4, 3]
    np.testing.assert_allclose(results[1].outputs["scores"], reference(data[1]), rtol=1e-6)
