"""RunFeed on the CPU runners: one open run() fed by callers on several threads, each getting its own result.

The GPU runner's side (overlap on the slots, a lone caller that must not wait for a
second) is in tests/runtime/gpu/test_runner.py over the fake pycuda.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from vggedge.errors import InputError, VggEdgeError
from vggedge.runtime.base import RunnerOptions
from vggedge.runtime.cpu.openvino_native import OpenVinoRunner, installed
from vggedge.runtime.feed import RunFeed
from vggedge.runtime.ort import OrtOptions, OrtRunner

RUNNERS = {
    "ort": lambda path: OrtRunner(path, OrtOptions(intra_op_threads=1), RunnerOptions(max_batch=4, slots=2)),
    "openvino": lambda path: OpenVinoRunner(path, RunnerOptions(max_batch=4, slots=2, threads=1)),
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from small_models import write_tiny_net

    return write_tiny_net(tmp_path_factory.mktemp("feed") / "tiny.onnx")


@pytest.fixture(params=sorted(RUNNERS))
def make_runner(request: pytest.FixtureRequest) -> Callable[[Path], Any]:
    if request.param == "openvino" and not installed():
        pytest.skip("openvino not installed (pip install 'vggedge[openvino]')")
    return RUNNERS[request.param]


def copy_rows(rows: np.ndarray, inputs: dict[str, np.ndarray]) -> int:
    inputs["images"][:len(rows)] = rows
    return len(rows)


def in_threads(calls: list[Callable[[], Any]], timeout: float = 60.0) -> list[Any]:
    """Run each call on its own thread; their results (or exceptions) in order. A call still running after
    ``timeout`` fails the test instead of hanging it."""
    results: list[Any] = [None] * len(calls)

    def one(i: int) -> None:
        try:
            results[i] = calls[i]()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads), "a caller never got its result"
    return results


def test_each_caller_gets_its_own_batch_back(tiny: Path, make_runner) -> None:
    """Six callers at once, batches of different sizes and contents: every one gets exactly its rows, equal to
    a blocking infer() of the same batch."""
    rng = np.random.default_rng(3)
    batches = [rng.normal(0, 1, (n, 3, 32, 32)).astype(np.float32) for n in (1, 4, 2, 3, 4, 1)]
    with make_runner(tiny) as runner:
        want = [runner.infer({"images": b})["predictions"] for b in batches]
        with RunFeed(runner, copy_rows) as feed:
            got = in_threads([lambda b=b: feed.submit(b) for b in batches])
            alone = feed.submit(batches[2])  # a lone caller later: handed back without a second batch
        assert not runner._running  # closing the feed ended its run
        runner.infer({"images": batches[0]})  # and the runner is usable again
    for out, batch, expected in zip(got, batches, want):
        assert not isinstance(out, BaseException), out
        assert out.batch == len(batch) and out.tag is batch
        np.testing.assert_allclose(out.outputs["predictions"], expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(alone.outputs["predictions"], want[2], rtol=1e-4, atol=1e-5)


def test_a_failed_run_fails_its_callers_and_every_later_one(tiny: Path, make_runner) -> None:
    good = np.zeros((2, 3, 32, 32), np.float32)
    with make_runner(tiny) as runner:
        feed = RunFeed(runner).start()  # ready feeds: each is checked against the model's input
        assert feed.submit(good).batch == 2
        with pytest.raises(InputError, match=r"input 'images': shape \(2, 3, 16, 16\), expected \(N, 3, 32, 32\)"):
            feed.submit(np.zeros((2, 3, 16, 16), np.float32))
        with pytest.raises(InputError, match="shape"):  # the run is over: no new run on a runner in doubt
            feed.submit(good)
        feed.close(timeout=30)
        assert not runner._running


def test_submit_needs_a_started_open_feed(tiny: Path) -> None:
    with OrtRunner(tiny) as runner:
        feed = RunFeed(runner, copy_rows)
        with pytest.raises(VggEdgeError, match="not started"):
            feed.submit(np.zeros((1, 3, 32, 32), np.float32))
        feed.start()
        feed.close(timeout=30)
        feed.close()  # twice is fine
        with pytest.raises(VggEdgeError, match="closed"):
            feed.submit(np.zeros((1, 3, 32, 32), np.float32))


@pytest.mark.skipif(not installed(), reason="openvino not installed (pip install 'vggedge[openvino]')")
def test_openvino_prepares_the_next_batch_while_one_runs(tiny: Path) -> None:
    """OpenVINO's asynchronous requests: the second caller's batch is prepared and started before the first
    is collected (two in flight), and the first still comes back without waiting for a third."""
    log: list[str] = []
    x = np.random.default_rng(4).normal(0, 1, (2, 3, 32, 32)).astype(np.float32)

    def prepare(rows: np.ndarray, inputs: dict[str, np.ndarray]) -> int:
        if not log:  # the first batch waits until the second caller has queued its own
            deadline = time.monotonic() + 30
            while feed._queue.qsize() < 1 and time.monotonic() < deadline:
                time.sleep(0.001)
        log.append(f"prepare {len(rows)}")
        return copy_rows(rows, inputs)

    with RUNNERS["openvino"](tiny) as runner, RunFeed(runner, prepare) as feed:
        first = threading.Thread(target=lambda: log.append(f"result {feed.submit(x[:1]).batch}"))
        first.start()
        deadline = time.monotonic() + 30
        while not feed._waiting and time.monotonic() < deadline:  # the first batch is in the run
            time.sleep(0.001)
        second = feed.submit(x)
        first.join(30)
    assert second.batch == 2 and log == ["prepare 1", "prepare 2", "result 1"] and feed.max_in_flight == 2
