"""Sinks: annotated video files that open with the expected frame count, JSON lines, the output worker."""
from __future__ import annotations

import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from vggedge.apps.stream import StreamResult
from vggedge.errors import ConfigError
from vggedge.model.labels import Prediction
from vggedge.video.sinks import CallbackSink, JsonLinesSink, OutputWorker, VideoFileSink, annotate


def result(source: int = 0, frame: int = 0, shade: int = 90) -> StreamResult:
    image = np.full((120, 160, 3), shade, np.uint8)
    return StreamResult(source, f"cam{source}", frame, 1.7e9, [Prediction(281, "tabby", 0.9)], 0.042,
                        {"infer": 0.01}, 12.5, image)


def frame_count(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"{path} does not open"
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def test_video_file_per_source_has_every_frame(tmp_path: Path) -> None:
    sink = VideoFileSink(tmp_path / "out.mp4", sources=2, fps=[10.0, None])
    for i in range(7):
        sink.write(result(0, i))
    for i in range(3):
        sink.write(result(1, i))
    sink.close()
    assert frame_count(tmp_path / "out-0.mp4") == 7 and frame_count(tmp_path / "out-1.mp4") == 3
    assert sink.frames == {0: 7, 1: 3}


def test_video_sink_rejects_bad_targets(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unsupported video type"):
        VideoFileSink(tmp_path / "out.gif")
    with pytest.raises(ConfigError, match="does not exist"):
        VideoFileSink(tmp_path / "missing" / "out.mp4")


def test_annotation_draws_label() -> None:
    plain = result()
    drawn = annotate(plain.image, plain)
    assert drawn.shape == plain.image.shape and not np.array_equal(drawn, plain.image)
    assert np.array_equal(plain.image, np.full((120, 160, 3), 90, np.uint8))  # the frame itself is untouched


def test_json_lines_and_worker_survives_failing_sink(tmp_path: Path) -> None:
    buffer = io.StringIO()
    seen = []

    def broken(_):
        raise RuntimeError("disk full")

    worker = OutputWorker([JsonLinesSink(buffer), CallbackSink(broken), CallbackSink(seen.append)])
    with worker:
        for i in range(4):
            worker.put(result(0, i))
    rows = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert [r["frame"] for r in rows] == [0, 1, 2, 3] and len(seen) == 4
    assert rows[0]["top_k"] == [{"index": 281, "label": "tabby", "score": 0.9}] and rows[0]["latency_ms"] == 42.0
    assert len(worker.errors) == 1 and "disk full" in worker.errors[0]


def test_open_sink_picks_the_sink_by_uri(tmp_path) -> None:
    """One switch on the URI (jetson-utils' videoOutput::Create): JSON lines, video file, errors naming choices."""
    from vggedge.video.sinks import SinkContext, open_sink

    assert isinstance(open_sink("-"), JsonLinesSink) and isinstance(open_sink("json://-"), JsonLinesSink)
    for uri in (tmp_path / "a.jsonl", f"json://{tmp_path / 'b.txt'}"):
        sink = open_sink(uri)
        assert isinstance(sink, JsonLinesSink)
        sink.close()
    assert (tmp_path / "a.jsonl").exists() and (tmp_path / "b.txt").exists()
    video = open_sink(f"file://{tmp_path / 'out.avi'}", SinkContext(["a", "b"], lambda i: 12.0))
    assert isinstance(video, VideoFileSink) and video.path_for(1) == tmp_path / "out-1.avi" and video._fps(0) == 12.0
    assert isinstance(open_sink(tmp_path / "out.mp4"), VideoFileSink)
    with pytest.raises(ConfigError, match=r"output 'rtmp://x': no sink for this URI; expected one of -, json://"):
        open_sink("rtmp://x")
    with pytest.raises(ConfigError, match=r"unsupported video type"):
        open_sink(f"file://{tmp_path / 'out.gif'}")
