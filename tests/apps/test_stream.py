"""The stream pipeline: frame-by-frame agreement with the Classifier, batching of sources, latest-frame policy."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Mapping

import numpy as np
import pytest

import vggedge
from vggedge.apps import stream as stream_mod
from vggedge.apps.classify import Classifier
from vggedge.apps.stream import StreamOptions, stream
from vggedge.apps.stream.stats import ScoreSmoother, format_summary
from vggedge.errors import ConfigError
from vggedge.runtime.base import BatchOutput, Runner, TensorMeta
from vggedge.runtime.select import Selection
from vggedge.spec import load_spec_for
from vggedge.video.sinks import CallbackSink
from vggedge.video.sources import SourceError

from clips import CALIB_PHOTOS, HOLD, calib_frames, write_clip


def photo_top1(model: Path) -> list[int]:
    with Classifier(model, precision="auto") as clf:
        return [preds[0].index for preds in clf.classify(CALIB_PHOTOS, k=1)]


def test_clip_frames_match_classifier_on_each_photo(stream_model: Path, calib_clip: Path) -> None:
    expected = photo_top1(stream_model)
    results = list(stream([str(calib_clip)], stream_model, batch_size=4))
    assert [r.frame for r in results] == list(range(len(CALIB_PHOTOS) * HOLD))  # every frame, in order
    assert [r.top_k[0].index for r in results] == [idx for idx in expected for _ in range(HOLD)]
    assert all(r.source == 0 and r.uri == str(calib_clip) and len(r.top_k) == 5 for r in results)


def test_two_sources_batched_keep_ids(stream_model: Path, calib_clip: Path, tmp_path: Path) -> None:
    reversed_clip = write_clip(tmp_path / "reversed.avi", calib_frames()[::-1])
    expected = photo_top1(stream_model)
    run = stream([str(calib_clip), str(reversed_clip)], stream_model)  # batch = one frame per source
    results = list(run)
    summary = run.summary()
    by_source = {s: [r for r in results if r.source == s] for s in (0, 1)}
    n = len(CALIB_PHOTOS) * HOLD
    assert [r.frame for r in by_source[0]] == list(range(n)) == [r.frame for r in by_source[1]]
    assert [r.top_k[0].index for r in by_source[0]] == [i for i in expected for _ in range(HOLD)]
    assert [r.top_k[0].index for r in by_source[1]] == [i for i in expected[::-1] for _ in range(HOLD)]
    assert summary["batches"] == n  # each inference call carried one frame of each source
    assert summary["classified"] == 2 * n and summary["dropped"] == 0


def test_every_nth_frame_and_json_fields(stream_model: Path, calib_clip: Path) -> None:
    results = list(stream([str(calib_clip)], stream_model, every=4, top_k=3))
    assert [r.frame for r in results] == list(range(0, len(CALIB_PHOTOS) * HOLD, 4))
    row = json.loads(json.dumps(results[0].to_dict()))
    assert set(row) == {"source", "uri", "frame", "timestamp", "top_k", "latency_ms", "times_ms", "fps"}
    assert len(row["top_k"]) == 3 and row["latency_ms"] > 0 and abs(row["timestamp"] - time.time()) < 120
    assert set(row["times_ms"]) == {"wait", "prepare", "infer"}


class SlowRunner(Runner):
    """A runner that takes ``delay`` seconds per batch (a model slower than the camera)."""

    name = "slow"

    def __init__(self, delay: float, options=None) -> None:
        super().__init__(options)
        self.delay = delay
        self.batches: list[int] = []

    def _activate(self) -> None:
        pass

    def _deactivate(self) -> None:
        pass

    def _input_metadata(self) -> dict[str, TensorMeta]:
        return {"images": TensorMeta("images", np.dtype(np.float32), (None, 3, 32, 32))}

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        time.sleep(self.delay)
        n = feed["images"].shape[0]
        self.batches.append(n)
        scores = np.zeros((n, 1000), np.float32)
        scores[:, 7] = 1.0
        return {"predictions": scores}


def test_latest_frame_policy_with_slow_runner(stream_model: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    fast = write_clip(tmp_path / "fast.avi", calib_frames(), hold=25, fps=100.0)  # 300 frames, 3 s at 100 fps
    runner = SlowRunner(0.08)
    spec = load_spec_for(stream_model)
    monkeypatch.setattr(stream_mod, "select_runner",
                        lambda *a, **k: Selection("slow", runner, spec=spec, options=k["options"]))
    run = stream([str(fast)], stream_model, pace=True)  # paced: a live 100 fps source, model at ~12 fps
    results = list(run)
    summary = run.summary()
    assert summary["frames"] == 300
    assert summary["dropped"] > 150  # the camera is ~8x faster than the model: most frames are replaced
    assert summary["classified"] + summary["dropped"] <= 300
    latencies = [r.latency_s for r in results]
    # bounded, not growing: a frame waits at most about one inference before it is taken, then is inferred
    assert max(latencies[2:]) < 4 * 0.08 + 0.25, latencies
    assert np.mean(latencies[-5:]) < np.mean(latencies[2:7]) + 0.15
    assert all(b == 1 for b in runner.batches)  # one live source: only its newest frame each step


class HoldingRunner(SlowRunner):
    """Schedules run() as the GPU slots do (and OpenVINO's requests): a batch is handed back only when the
    next one is submitted into a full set of slots, the source ends, or the source yields IDLE."""

    name = "holding"

    def _run(self, items, prepare, copy):
        from vggedge.runtime.gpu.pipeline import SlotScheduler, drive

        buffers = [self._host_buffers() for _ in range(2)]

        def fill(slot: int, item) -> tuple[int, object]:
            return int(prepare(item, buffers[slot])), item

        def collect(slot: int, token: tuple[int, object]) -> BatchOutput:
            n, item = token
            return BatchOutput(self._infer({"images": buffers[slot]["images"][:n]}), n, item, {"infer": 0.0})

        yield from drive(items, SlotScheduler(2), fill, lambda slot, token: None, collect)


def test_a_live_stream_on_a_run_that_holds_batches_goes_on(stream_model: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A live source takes its next frame only once the model has the last one back: on a run that holds a
    batch until the next is submitted (GPU slots, OpenVINO requests) the muxer yields IDLE instead of
    waiting, or the stream would wait for itself (it did, on OpenVINO native, before)."""
    import threading

    clip = write_clip(tmp_path / "live.avi", calib_frames(), hold=5, fps=50.0)
    runner = HoldingRunner(0.0)
    spec = load_spec_for(stream_model)
    monkeypatch.setattr(stream_mod, "select_runner",
                        lambda *a, **k: Selection("holding", runner, spec=spec, options=k["options"]))
    results: list = []
    worker = threading.Thread(target=lambda: results.extend(stream([str(clip)], stream_model, pace=True,
                                                                   max_frames=6)), daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "the live stream waited for a result its own run was holding"
    assert len(results) == 6 and all(r.top_k[0].index == 7 for r in results)


def test_corrupt_frame_skipped_and_counted(stream_model: Path, tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "slides"
    folder.mkdir()
    import cv2

    for i, frame in enumerate(calib_frames()[:3]):
        cv2.imwrite(str(folder / f"{i}_ok.jpg"), frame)
    (folder / "1_zbroken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with caplog.at_level(logging.WARNING):
        run = stream([str(folder)], stream_model)
        results = list(run)
    assert len(results) == 3 and run.summary()["corrupt"] == 1
    assert any("skipped corrupt frame" in m and "1_zbroken.jpg" in m for m in caplog.messages)
    assert [r.frame for r in results] == [0, 1, 3]  # frame numbers still count the corrupt one


def test_unopenable_source_names_it(stream_model: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nope.mp4"
    with pytest.raises(SourceError, match=f"{missing}: no such video file"):
        list(stream([str(missing)], stream_model))
    not_video = tmp_path / "text.mp4"
    not_video.write_text("hello")
    with pytest.raises(SourceError, match=r"text\.mp4: cannot open this video file source"):
        list(stream([str(not_video)], stream_model))


def test_callback_sink_and_max_frames(stream_model: Path, calib_clip: Path) -> None:
    seen = []
    with stream([str(calib_clip)], stream_model, sinks=[CallbackSink(seen.append)], max_frames=5) as run:
        results = list(run)
    assert len(results) == 5 and [r.frame for r in seen] == [0, 1, 2, 3, 4]
    text = format_summary(run.summary())
    assert "5 classified" in text and "e2e" in text and "p95" in text


def test_a_failing_output_stops_a_looping_stream(stream_model: Path, calib_clip: Path) -> None:
    """A sink that fails (here: a full disk after 3 frames) ends iteration with OutputError naming it, even
    for a source that never ends; capture threads and the output thread are stopped."""
    import errno
    import threading

    from vggedge.errors import OutputError

    seen: list = []

    def full_disk(result) -> None:
        if len(seen) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        seen.append(result)

    run = stream([str(calib_clip)], stream_model, sinks=[CallbackSink(full_disk)], loop=True)
    yielded = 0
    with pytest.raises(OutputError, match=r"output callback full_disk: cannot write \(No space left on device"):
        for _ in run:
            yielded += 1
            assert yielded < 500, "the stream went on after its output failed"
    run.close()
    assert len(seen) == 3 and run.summary()["classified"] >= 3
    assert stream_mod.wait_for(lambda: not [t for t in threading.enumerate()
                                            if t.name == "stream-output" or t.name.startswith("capture-")], 10)


def test_smoother_time_constant() -> None:
    smoother = ScoreSmoother(tau=1.0)
    a, b = np.array([1.0, 0.0], np.float32), np.array([0.0, 1.0], np.float32)
    assert np.allclose(smoother.update(0, 0.0, a), a)
    after_tau = smoother.update(0, 1.0, b)  # one time constant later: 63% of the way to the new scores
    assert after_tau[1] == pytest.approx(1 - np.exp(-1), rel=1e-5)
    assert np.allclose(smoother.update(1, 5.0, b), b)  # sources are smoothed separately
    assert np.allclose(ScoreSmoother(0.0).update(0, 0.0, b), b)
    with pytest.raises(ConfigError):
        ScoreSmoother(-1)


def test_smoothing_holds_label_through_one_odd_frame(stream_model: Path, tmp_path: Path) -> None:
    frames = calib_frames()
    clip = write_clip(tmp_path / "flicker.avi", [frames[0]] * 10 + [frames[5]] + [frames[0]] * 4, hold=1)
    raw = [r.top_k[0].index for r in stream([str(clip)], stream_model)]
    smooth = [r.top_k[0].index for r in stream([str(clip)], stream_model, smoothing=1.0)]
    assert raw[10] != raw[0]  # the odd frame flips the raw label
    assert len(set(smooth)) == 1  # a 1 s time constant at 10 fps keeps it


def test_options_checked_and_api_exported() -> None:
    with pytest.raises(ConfigError, match="every"):
        StreamOptions(every=0)
    with pytest.raises(ConfigError, match="unknown options"):
        stream(["x.mp4"], "m.onnx", colour=True)
    assert vggedge.stream is stream_mod.stream


def test_decoder_choice_is_made_before_sources_open_and_logged(stream_model: Path, calib_clip: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    from vggedge.errors import BackendUnavailable

    monkeypatch.delenv("VGGEDGE_DECODER", raising=False)
    with pytest.raises(ConfigError, match="decoder 'nvjpeg': choose one of auto, gpu, cpu"):
        StreamOptions(decoder="nvjpeg")
    with pytest.raises(BackendUnavailable, match=r"^GPU preprocessing is not possible: the backend \(ort-cpu\)"):
        stream(["/nonexistent/clip.mp4"], stream_model, backend="ort-cpu", decoder="gpu")  # no source opened yet
    with caplog.at_level(logging.INFO, logger="vggedge.apps.stream"):
        run = stream([str(calib_clip)], stream_model, backend="ort-cpu", decoder="cpu", max_frames=2)
        assert len(list(run)) == 2
    assert (run.decoder.kind, run.decoder.reason) == ("cpu", "asked for the CPU preprocessing")
    assert any("frames preprocessed on the cpu (asked for the CPU preprocessing)" in m for m in caplog.messages)


def test_loop_restarts_file_and_frame_numbers_go_on(stream_model: Path, calib_clip: Path) -> None:
    results = list(stream([str(calib_clip)], stream_model, loop=True, max_frames=40, batch_size=4))
    assert [r.frame for r in results] == list(range(40))
    assert [r.top_k[0].index for r in results[36:40]] == [r.top_k[0].index for r in results[0:4]]


def test_stream_runs_an_engine_with_its_sidecar(stream_model: Path, calib_clip: Path, tmp_path: Path,
                                                fake_trt_machine, engine_writer) -> None:
    """``--model x.plan``: the spec comes from the engine's sidecar (fake TensorRT runs its source ONNX)."""
    plan = engine_writer(stream_model, tmp_path)
    run = stream([str(calib_clip)], plan, batch_size=4)
    assert run.selection.backend == "trt" and run.selection.artefact == plan and run.spec.num_classes == 1000
    on_engine = [r.top_k[0].index for r in run]
    on_onnx = [r.top_k[0].index for r in stream([str(calib_clip)], stream_model, batch_size=4, backend="ort-cpu")]
    assert len(on_engine) == 36 and on_engine == on_onnx
    assert len(fake_trt_machine.runner.made) == 1
