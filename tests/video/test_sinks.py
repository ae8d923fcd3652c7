"""Sinks: annotated video files that open with the expected frame count, JSON lines, the output worker."""
from __future__ import annotations

import errno
import io
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from vggedge.apps.stream import StreamResult, wait_for
from vggedge.errors import ConfigError, OutputClosed, OutputError
from vggedge.model.labels import Prediction
from vggedge.video.sinks import CallbackSink, JsonLinesSink, OutputWorker, VideoFileSink, annotate, output_failure


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


def test_json_lines_through_the_worker(tmp_path: Path) -> None:
    buffer = io.StringIO()
    seen = []
    worker = OutputWorker([JsonLinesSink(buffer), CallbackSink(seen.append)])
    with worker:
        for i in range(4):
            worker.put(result(0, i))
    rows = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert [r["frame"] for r in rows] == [0, 1, 2, 3] and len(seen) == 4 and worker.failure is None
    assert rows[0]["top_k"] == [{"index": 281, "label": "tabby", "score": 0.9}] and rows[0]["latency_ms"] == 42.0


def failing_after(frames: int, exc: BaseException):
    """A sink function that takes ``frames`` results, then raises ``exc``."""
    seen: list = []

    def write(r) -> None:
        if len(seen) == frames:
            raise exc
        seen.append(r)
    return write, seen


@pytest.mark.parametrize("exc,kind,words", [
    (OSError(errno.ENOSPC, "No space left on device"), OutputError, "cannot write (No space left on device, ENOSPC)"),
    (RuntimeError("codec gone"), OutputError, "cannot write (codec gone)"),
    (BrokenPipeError(errno.EPIPE, "Broken pipe"), OutputClosed, "its reader closed it")])
def test_a_failing_sink_ends_the_output(exc: BaseException, kind: type, words: str) -> None:
    """The first failure stops every sink's writing, is reported once (on_failure) and raised by put()."""
    write, seen = failing_after(2, exc)
    after: list = []
    stopped: list = []
    worker = OutputWorker([CallbackSink(write), CallbackSink(after.append)], on_failure=stopped.append)
    with worker:
        for i in range(3):
            worker.put(result(0, i))
        assert wait_for(lambda: worker.failure is not None, 10)
        with pytest.raises(kind, match=re.escape(words)) as info:
            worker.put(result(0, 3))
    assert len(seen) == 2 and len(after) == 2  # the result that failed went to no later sink either
    assert stopped == [info.value] and type(info.value) is kind and "callback write" in str(info.value)


def test_failures_name_the_output_with_credentials_redacted() -> None:
    failure = output_failure("http://user:s3cret@host:8080", ConnectionResetError(errno.ECONNRESET, "reset"))
    assert str(failure).startswith("output http://user:***@host:8080: cannot write (reset, ECONNRESET)")
    assert "s3cret" not in str(failure) and failure.output == "http://user:***@host:8080"
    assert isinstance(output_failure("stdout", BrokenPipeError()), OutputClosed)


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
