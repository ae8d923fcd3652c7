"""Capture threads: an MJPEG-over-HTTP camera read, cut mid-stream and reconnected; stalls; latest-frame policy."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from vggedge.video.capture import Capture
from vggedge.video.sources import NetworkSource, Source, SourceOptions

from clips import calib_frames
from media import MjpegServer


def take_frames(capture: Capture, cond: threading.Condition, n: int, timeout: float) -> list:
    """Up to ``n`` frames taken within ``timeout`` seconds."""
    frames, deadline = [], time.monotonic() + timeout
    while len(frames) < n and time.monotonic() < deadline:
        with cond:
            frame = capture.take()
            if frame is None:
                if capture.done:
                    break
                cond.wait(0.05)
                continue
        frames.append(frame)
    return frames


def test_mjpeg_http_read_cut_and_reconnected() -> None:
    server = MjpegServer(calib_frames()[:4], fps=30).start()
    cond = threading.Condition()
    capture = Capture(0, NetworkSource(server.url, SourceOptions(read_timeout=2.0, open_timeout=3.0)), notify=cond)
    try:
        with capture:
            before = take_frames(capture, cond, 10, timeout=20)
            assert len(before) == 10 and before[0].image.shape == (120, 160, 3)
            assert capture.latest  # a network stream is live: newest frame only
            server.stop()  # the camera goes away mid-stream
            assert _until(lambda: not capture.connected, 10), "the cut was not noticed"
            time.sleep(0.5)
            server.start()  # and comes back on the same address
            assert _until(lambda: capture.counts.reconnects >= 1, 20), capture.counts
            after = take_frames(capture, cond, 5, timeout=20)
    finally:
        server.stop()
    assert len(after) == 5 and capture.connected
    assert after[0].index > before[-1].index  # frame numbers go on across the reconnect
    assert any("reconnect" in e or "ended" in e or "dropped" in e for e in capture.counts.errors)


class StallingSource(Source):
    """A live source whose reads block forever after ``good`` frames, on the first connection only."""

    kind, live = "fake camera", True

    def __init__(self, good: int = 5) -> None:
        super().__init__("fake://stalling", SourceOptions(read_timeout=0.5))
        self.good, self.opens, self.reads = good, 0, 0
        self.block = threading.Event()

    def open(self) -> None:
        self.opens += 1

    def read(self):
        self.reads += 1
        if self.opens == 1 and self.reads > self.good:
            self.block.wait(30)  # a read that never returns (an OpenCV read cannot be interrupted)
        time.sleep(0.01)
        return np.zeros((8, 8, 3), np.uint8)


def test_stalled_read_detected_by_timeout_and_reopened() -> None:
    source = StallingSource()
    cond = threading.Condition()
    capture = Capture(0, source, notify=cond)
    with capture:
        take_frames(capture, cond, 5, timeout=5)
        deadline = time.monotonic() + 10
        while capture.counts.stalls == 0 and time.monotonic() < deadline:
            capture.check_stall(source.options.read_timeout)  # the pipeline's watchdog
            time.sleep(0.05)
        assert capture.counts.stalls == 1
        assert _until(lambda: source.opens >= 2, 5)  # reopened after a short backoff
        assert len(take_frames(capture, cond, 3, timeout=5)) == 3  # frames flow again
        assert capture.counts.reconnects >= 1
        source.block.set()


def test_latest_frame_policy_counts_dropped() -> None:
    class Fast(Source):
        kind, live = "fake camera", True

        def open(self) -> None:
            self.n = 0

        def read(self):
            self.n += 1
            time.sleep(0.002)
            return None if self.n > 200 else np.full((4, 4, 3), self.n % 255, np.uint8)

    cond = threading.Condition()
    capture = Capture(0, Fast("fake://fast"), notify=cond, reconnect=False)
    with capture:
        assert _until(lambda: capture.ended, 10)
        with cond:
            last = capture.take()
            assert capture.take() is None  # only the newest frame was kept
    assert last.index == 199 and capture.counts.read == 200
    assert capture.counts.dropped == 199


def _until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("every", [1, 3])
def test_every_nth_frame_published(every: int, calib_clip) -> None:
    from vggedge.video.sources import FileSource

    cond = threading.Condition()
    capture = Capture(0, FileSource(str(calib_clip)), every=every, notify=cond)
    with capture:
        frames = take_frames(capture, cond, 100, timeout=10)
    assert [f.index for f in frames] == list(range(0, 36, every))
    assert capture.counts.skipped == 36 - len(frames)


def test_unexpected_failure_ends_source_with_message() -> None:
    class Broken(Source):
        kind = "fake file"

        def open(self) -> None:
            pass

        def read(self):
            raise RuntimeError("decoder exploded")

    cond = threading.Condition()
    capture = Capture(0, Broken("fake://broken"), notify=cond)
    with capture:
        assert _until(lambda: capture.done, 5)
    assert "fake://broken) stopped: decoder exploded" in capture.counts.errors[-1]


def test_backoff_wait_is_not_a_stall() -> None:
    from vggedge.video.sources import SourceError

    class Flaky(Source):
        kind, live = "fake camera", True

        def __init__(self) -> None:
            super().__init__("fake://flaky", SourceOptions(read_timeout=0.3))
            self.opens, self.reads = 0, 0

        def open(self) -> None:
            self.opens += 1
            if 2 <= self.opens <= 4:  # the first three reopen attempts fail: 0.25 + 0.5 + 1 s of backoff
                raise SourceError("fake://flaky: connection refused")

        def read(self):
            self.reads += 1
            time.sleep(0.01)
            return None if self.reads == 3 else np.zeros((4, 4, 3), np.uint8)  # one drop

    source = Flaky()
    capture = Capture(0, source, notify=threading.Condition())
    with capture:
        deadline = time.monotonic() + 10
        while capture.counts.reconnects == 0 and time.monotonic() < deadline:
            capture.check_stall(0.3)
            time.sleep(0.02)
    assert capture.counts.reconnects == 1 and source.opens == 5
    assert capture.counts.stalls == 0  # waiting between attempts is not a stalled read
    assert sum("connection refused" in e for e in capture.counts.errors) == 3
