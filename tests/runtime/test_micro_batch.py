"""RunnerOptions.micro_batch: the base Runner runs a batch as smaller calls, invisible to the caller."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vggedge.errors import ConfigError
from vggedge.runtime.base import RunnerOptions
from vggedge.runtime.ort import OrtRunner


class CountingRunner(OrtRunner):
    """The real onnxruntime runner, recording the rows of each backend call."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[int] = []

    def _infer(self, feed):
        self.calls.append(next(iter(feed.values())).shape[0])
        return super()._infer(feed)


def test_a_batch_runs_as_micro_batches_with_the_same_outputs(tiny_net: Path) -> None:
    x = np.random.default_rng(0).normal(0, 1, (7, 3, 32, 32)).astype(np.float32)
    with CountingRunner(tiny_net, runner_options=RunnerOptions(max_batch=8)) as whole:
        want = whole.infer({"images": x})["predictions"]
    with CountingRunner(tiny_net, runner_options=RunnerOptions(max_batch=8, micro_batch=3)) as split:
        got = split.infer({"images": x})["predictions"]
        assert split.calls == [3, 3, 1] and got.shape == (7, 10)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        outs = list(split.run([x[:5], x[5:]]))  # run() goes through infer(): split the same way
        assert [o.batch for o in outs] == [5, 2] and split.calls[3:] == [3, 2, 2]
        np.testing.assert_allclose(np.concatenate([o.outputs["predictions"] for o in outs]), want,
                                   rtol=1e-5, atol=1e-6)
    with CountingRunner(tiny_net, runner_options=RunnerOptions(max_batch=8, micro_batch=8)) as same:
        same.infer({"images": x})
        assert same.calls == [7]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_micro_batch_is_checked(bad) -> None:
    with pytest.raises(ConfigError, match="micro_batch"):
        RunnerOptions(micro_batch=bad)
