"""apps/batches.py: the one batching helper over Runner.run(), on a tiny numpy runner (no model needed)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vggedge.apps.batches import expand_images, gather, image_batches, run_images
from vggedge.errors import ConfigError, ImageError
from vggedge.runtime.base import Runner, RunnerOptions, TensorMeta
from vggedge.spec import RAW_PIXELS, ModelSpec

REPO = Path(__file__).resolve().parents[2]
SPEC = ModelSpec(input_name="x", output_name="y", height=4, width=4, preprocessing=RAW_PIXELS, num_classes=3)


class SumRunner(Runner):
    """Output row = (mean of the input row, rows in this call); ``fixed`` makes it a fixed-batch model."""

    name = "sum"

    def __init__(self, options: RunnerOptions, fixed: int | None = None) -> None:
        super().__init__(options)
        self.fixed, self.calls = fixed, []

    def _activate(self) -> None: ...

    def _deactivate(self) -> None: ...

    def _input_metadata(self) -> dict[str, TensorMeta]:
        return {"x": TensorMeta("x", np.dtype(np.float32), (self.fixed, 3, 4, 4))}

    def _infer(self, feed):
        x = feed["x"]
        self.calls.append(x.shape[0])
        return {"y": np.stack([x.mean(axis=(1, 2, 3)), np.full(len(x), len(x), np.float32)], axis=1)}


def frame(value: int) -> np.ndarray:
    return np.full((6, 6, 3), value, np.uint8)


def test_results_in_order_with_bad_sources_in_place(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"")
    sources = [frame(1), bad, frame(3), frame(4), tmp_path / "missing.png"]
    with SumRunner(RunnerOptions(max_batch=2)) as runner:
        results = list(run_images(runner, SPEC, sources, 2))
    assert [r.index for r in results] == [0, 1, 2, 3, 4]
    assert [r.ok for r in results] == [True, False, True, True, False]
    assert [float(r.outputs["y"][0]) for r in results if r.ok] == [1.0, 3.0, 4.0]
    assert runner.calls == [1, 2, 1]  # only decodable rows are inferred; an all-bad batch runs one blank row
    assert "bad.jpg: image file is empty" in str(results[1].error)
    with SumRunner(RunnerOptions(max_batch=2)) as runner, pytest.raises(ImageError, match="bad.jpg"):
        list(run_images(runner, SPEC, sources, 2, strict=True))


def test_fixed_batch_model_gets_full_batches_and_short_last_one_padded() -> None:
    with SumRunner(RunnerOptions(max_batch=8), fixed=4) as runner:
        results = list(run_images(runner, SPEC, [frame(v) for v in range(6)], 8))
    assert runner.calls == [4, 4]  # batch size capped at the model's 4; the last 2 padded to 4
    assert [float(r.outputs["y"][0]) for r in results] == [0, 1, 2, 3, 4, 5]


def test_gather_copies_rows_once_into_one_array() -> None:
    with SumRunner(RunnerOptions(max_batch=2)) as runner:
        rows, failed = gather(run_images(runner, SPEC, [frame(v) for v in (5, 6, 7)], 2, copy=False), "y", 3)
    assert failed == [] and rows.shape == (3, 2) and rows.dtype == np.float32
    np.testing.assert_array_equal(rows[:, 0], [5, 6, 7])


def test_image_batches_is_lazy_and_checks_size() -> None:
    def endless():
        n = 0
        while True:
            yield n
            n += 1

    batches = image_batches(endless(), 3)
    assert [next(batches).sources for _ in range(2)] == [[0, 1, 2], [3, 4, 5]]
    with pytest.raises(ConfigError, match=r"batch_size=0: expected an integer >= 1"):
        next(image_batches([1], 0))


def test_expand_images_lists_folders_keeps_files(tmp_path: Path) -> None:
    (tmp_path / "b.jpg").write_bytes(b"x")
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    missing = tmp_path / "missing.jpg"
    assert expand_images([str(missing), str(tmp_path)]) == [str(missing), tmp_path / "a.png", tmp_path / "b.jpg"]


def test_expand_images_refuses_nothing(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"no images found in .*; expected image files or folders"):
        expand_images([str(tmp_path)])


def test_prepare_images_passes_reduced_decode_to_the_decoder(decodes, monkeypatch) -> None:
    """The default prepare step (classify, demo, compare) follows the switch; a caller's choice overrides it."""
    from vggedge.apps.batches import prepare_images

    photo = REPO / "calib" / "astronaut.jpg"  # 512x512 for a 4x4 input: 1/8 scale covers it
    with SumRunner(RunnerOptions(max_batch=2)) as runner:
        list(run_images(runner, SPEC, [photo], 1))  # switch off: full-size decode
        list(run_images(runner, SPEC, [photo], 1, prepare_fn=prepare_images(SPEC, reduced_decode=True)))
        monkeypatch.setenv("VGGEDGE_REDUCED_DECODE", "1")
        list(run_images(runner, SPEC, [photo], 1))  # switch on: reduced, in the prepare worker thread
        list(run_images(runner, SPEC, [photo], 1, prepare_fn=prepare_images(SPEC, reduced_decode=False)))
    assert decodes.reduced == [False, True, True, False]
