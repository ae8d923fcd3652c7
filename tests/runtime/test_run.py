"""The overlapped ``run()`` of the runner contract, on the onnxruntime CPU runner (32x32 VGG16)."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnx
import pytest

from vggedge.errors import ConfigError, InputError, VggEdgeError
from vggedge.model.vgg16 import VGG16Options, build_onnx, random_weights
from vggedge.runtime.base import BatchOutput, Runner, RunnerOptions, TensorMeta
from vggedge.runtime.ort import OrtOptions, OrtRunner

OPTS = VGG16Options(include_rescaling=False, include_top=False, pooling="avg", input_shape=(32, 32, 3))


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("run") / "small.onnx"
    onnx.save(build_onnx(random_weights(OPTS), OPTS), path)
    return path


def feed(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, 3, 32, 32)).astype(np.float32)


def runner(path: Path, **options) -> OrtRunner:
    return OrtRunner(path, OrtOptions(intra_op_threads=1), RunnerOptions(**options))


def test_results_in_order_and_complete_with_short_last_batch(model_path: Path) -> None:
    sizes = [4, 4, 4, 3]
    data = [feed(n, seed) for seed, n in enumerate(sizes)]
    with runner(model_path, max_batch=4) as r:
        expected = [r.infer({"images": d})["avg_pool"] for d in data]

        def prepare(i: int, inputs: dict) -> int:
            inputs["images"][:sizes[i]] = data[i]
            return sizes[i]

        got = list(r.run(range(len(sizes)), prepare))
    assert [o.tag for o in got] == [0, 1, 2, 3]
    assert [o.batch for o in got] == sizes
    for out, want in zip(got, expected):
        assert isinstance(out, BatchOutput) and set(out.times) >= {"prepare", "infer"}
        np.testing.assert_allclose(out.outputs["avg_pool"], want, rtol=1e-5, atol=1e-6)


def test_ready_feeds_without_prepare(model_path: Path) -> None:
    data = [feed(2, 1), {"images": feed(1, 2)}]
    with runner(model_path, max_batch=2) as r:
        got = [o.outputs["avg_pool"].shape for o in r.run(data)]
    assert got == [(2, 512), (1, 512)]


class SleepyRunner(Runner):
    """A runner whose inference sleeps (releasing the GIL, as onnxruntime does) for a known time."""

    name = "sleepy"

    def __init__(self, pause: float, options: RunnerOptions) -> None:
        super().__init__(options)
        self.pause = pause

    def _activate(self) -> None: ...

    def _deactivate(self) -> None: ...

    def _input_metadata(self) -> dict[str, TensorMeta]:
        return {"images": TensorMeta("images", np.dtype(np.float32), (None, 3, 4, 4))}

    def _infer(self, feed):
        time.sleep(self.pause)
        return {"scores": feed["images"].sum(axis=(1, 2, 3))}


def test_prepare_overlaps_inference() -> None:
    """Prepare and inference each take a known time: overlapped total is well under the serial sum."""
    batches, n, pause = 10, 4, 0.05

    def prepare(i: int, inputs: dict) -> int:
        time.sleep(pause)
        inputs["images"][:n] = i
        return n

    with SleepyRunner(pause, RunnerOptions(max_batch=n)) as r:
        t0 = time.perf_counter()
        got = list(r.run(range(batches), prepare))
        overlapped = time.perf_counter() - t0
    assert [o.tag for o in got] == list(range(batches))
    assert [float(o.outputs["scores"][0]) for o in got] == [48.0 * i for i in range(batches)]
    serial = batches * 2 * pause
    assert overlapped < 0.75 * serial, (overlapped, serial)  # ideal: (batches + 1) / (2 * batches) = 0.55


def test_one_run_at_a_time_counted_from_the_call(model_path: Path) -> None:
    with runner(model_path) as r:
        first = r.run([feed(1, 0)])
        with pytest.raises(VggEdgeError, match="another run"):
            r.run([feed(1, 0)])
        first.close()
        assert len(list(r.run([feed(1, 0)]))) == 1


def test_errors_arrive_after_earlier_results(model_path: Path) -> None:
    def prepare(i: int, inputs: dict) -> int:
        if i == 2:
            raise ValueError("broken batch 2")
        inputs["images"][:1] = feed(1, i)
        return 1

    seen = []
    with runner(model_path) as r:
        with pytest.raises(ValueError, match="broken batch 2"):
            for out in r.run(range(5), prepare):
                seen.append(out.tag)
        assert len(list(r.run([feed(1, 0)]))) == 1  # the runner is usable again
    assert seen == [0, 1]


def test_early_stop_releases_the_runner(model_path: Path) -> None:
    with runner(model_path, slots=1) as r:
        with r.run(feed(1, i) for i in range(100)) as results:
            next(results)
        assert len(list(r.run([feed(1, 0)]))) == 1


def test_batch_above_max_is_refused(model_path: Path) -> None:
    with runner(model_path, max_batch=2) as r:
        with pytest.raises(InputError, match=r"batch of 3 rows is outside 1\.\.2"):
            list(r.run([feed(3, 0)]))


def test_fixed_batch_model_pads_short_batches(tmp_path: Path) -> None:
    model = build_onnx(random_weights(OPTS), OPTS)
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 4
    path = tmp_path / "fixed.onnx"
    onnx.save(model, path)
    data = feed(4, 3)
    with runner(path, max_batch=8) as r:
        assert r.batch_range() == (4, 4)
        full = r.infer({"images": data})["avg_pool"]

        def prepare(n: int, inputs: dict) -> int:
            inputs["images"][:n] = data[:n]
            return n

        got = list(r.run([4, 1], prepare))
    assert [o.outputs["avg_pool"].shape[0] for o in got] == [4, 1]
    np.testing.assert_allclose(got[1].outputs["avg_pool"][0], full[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("field, value", [("max_batch", 0), ("slots", -1), ("threads", 0), ("device", -1),
                                          ("max_batch", 2.5)])
def test_options_are_validated(field: str, value) -> None:
    with pytest.raises(ConfigError, match=f"runner option {field}="):
        RunnerOptions(**{field: value})
