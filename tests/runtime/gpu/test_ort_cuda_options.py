"""CUDA provider options built on CPUs: NHWC where the build has it, CUDA graphs, quiet logs, legacy dicts."""
from __future__ import annotations

import logging

import numpy as np
import pytest
from gpu_fakes import FakeDriver, batches, reference

from vggedge.errors import ConfigError
from vggedge.runtime.base import RunnerOptions
from vggedge.runtime.gpu.ort_cuda import OrtCudaRunner
from vggedge.runtime.gpu.ort_cuda_options import CUDNN_QUIET_ENV, QUIET, CudaOptions, merged, version_tuple


def test_provider_options_per_version() -> None:
    assert version_tuple("1.31.1") == (1, 31) and version_tuple("1.20.0rc1") == (1, 20) and version_tuple("2") == (2, 0)
    new = CudaOptions().provider_options(0, 1234, "1.31.1")
    assert new == {"device_id": "0", "user_compute_stream": "1234", "prefer_nhwc": "1"}
    assert "prefer_nhwc" not in CudaOptions().provider_options(0, 1, "1.19.2")  # no NHWC kernels in that build
    assert "prefer_nhwc" not in CudaOptions(prefer_nhwc=False).provider_options(0, 1, "1.31.1")
    full = CudaOptions(cuda_graph=True, tf32=False, conv_algo_search="HEURISTIC",
                       extra={"arena_extend_strategy": "kSameAsRequested"}).provider_options(1, 9, "1.31.1")
    assert full == {"device_id": "1", "user_compute_stream": "9", "prefer_nhwc": "1", "enable_cuda_graph": "1",
                    "use_tf32": "0", "cudnn_conv_algo_search": "HEURISTIC",
                    "arena_extend_strategy": "kSameAsRequested"}
    with pytest.raises(ConfigError, match="cuda_graph needs onnxruntime-gpu >= 1.18"):
        CudaOptions(cuda_graph=True).provider_options(0, 1, "1.17.3")
    with pytest.raises(ConfigError, match="EXHAUSTIVE, HEURISTIC, DEFAULT"):
        CudaOptions(conv_algo_search="FAST")
    with pytest.raises(ConfigError, match="log_severity=7"):
        CudaOptions(log_severity=7)


def test_legacy_string_options_map_onto_the_typed_ones() -> None:
    got = merged(CudaOptions(cuda_graph=True), {"use_tf32": "0", "prefer_nhwc": "0", "gpu_mem_limit": "1000"})
    assert got == CudaOptions(prefer_nhwc=False, cuda_graph=True, tf32=False, extra={"gpu_mem_limit": "1000"})
    assert merged(None, None) == CudaOptions()


def test_quiet_by_default_and_loud_with_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in CUDNN_QUIET_ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("CUDNN_LOGLEVEL_DBG", "2")  # the user's own setting wins
    options = CudaOptions()
    assert options.severity() == QUIET
    assert options.quiet_libraries() == {"CUDNN_FRONTEND_LOG_INFO": "0"}
    logger = logging.getLogger("vggedge.runtime.gpu.ort_cuda")
    logger.setLevel(logging.DEBUG)
    try:
        assert options.severity() == 0 and options.quiet_libraries() == {}
    finally:
        logger.setLevel(logging.NOTSET)
    assert CudaOptions(log_severity=3).severity() == 3


def test_runner_passes_the_options_and_logs_quietly(ort_env, fake_cuda: FakeDriver,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("CUDNN_LOGLEVEL_DBG", "CUDNN_FRONTEND_LOG_INFO"):
        monkeypatch.delenv(key, raising=False)
    ort = ort_env()
    with OrtCudaRunner(b"onnx", RunnerOptions(max_batch=4), provider_options={"use_tf32": "0"}) as runner:
        session = ort.sessions[0]()
        assert session.cuda_options["prefer_nhwc"] == "1" and session.cuda_options["use_tf32"] == "0"
        assert session.sess_options.log_severity_level == QUIET
        # cuDNN's loggers were off before preload_dlls() loaded cuDNN, not only by the time the session started
        assert ort.preloaded_env == [{"CUDNN_LOGLEVEL_DBG": "0", "CUDNN_FRONTEND_LOG_INFO": "0"}]
        assert runner.batch_range() == (1, 4)


def test_cuda_graphs_pad_to_one_shape_and_give_each_slot_its_graph(ort_env, fake_cuda: FakeDriver) -> None:
    ort = ort_env()
    data = batches((4, 1, 3, 4))
    with OrtCudaRunner(b"onnx", RunnerOptions(max_batch=4, slots=2), cuda=CudaOptions(cuda_graph=True)) as runner:
        assert runner.batch_range() == (4, 4)  # every batch padded to the captured shape
        results = list(runner.run(data))
        graph_ids = {slot.state["run_options"].entries["gpu_graph_id"] for slot in runner.pipeline.slots}
        session = ort.sessions[0]()
    assert graph_ids == {"1", "2"} and session.cuda_options["enable_cuda_graph"] == "1"
    assert set(session.bound_shapes) == {(4, 3, 2, 2)}  # one shape only: rebinding never changes it
    for batch, result in zip(data, results):
        np.testing.assert_allclose(result.outputs["scores"], reference(batch), rtol=1e-6)
