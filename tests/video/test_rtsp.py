"""RTSP end to end through a real RTSP server: read, server killed mid-stream, restarted, source reconnects."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from vggedge.apps.stream import stream

from media import RtspServer, make_h264_clip

pytestmark = pytest.mark.skipif(RtspServer.available() is not None, reason=str(RtspServer.available()))


def test_rtsp_reconnects_while_second_source_keeps_producing(stream_model: Path, calib_clip: Path,
                                                              tmp_path: Path) -> None:
    server = RtspServer(make_h264_clip(tmp_path / "camera.mp4")).start()
    run = stream([server.url, str(calib_clip)], stream_model, pace=True, loop=True, read_timeout=3.0)
    phase, killed_at, restarted_at = "before", 0.0, 0.0
    counts = {("before", 0): 0, ("down", 1): 0, ("after", 0): 0}
    deadline = time.monotonic() + 90
    try:
        for result in run:
            key = (phase, result.source)
            counts[key] = counts.get(key, 0) + 1
            now = time.monotonic()
            if phase == "before" and counts[("before", 0)] >= 10:
                server.kill()
                phase, killed_at = "down", now
            elif phase == "down" and now - killed_at > 3.0:
                server.start()
                phase, restarted_at = "after", now
            elif phase == "after" and result.source == 0 and result.timestamp > time.time() - (now - restarted_at):
                if counts[("after", 0)] >= 5:
                    break
            assert now < deadline, f"no reconnect within 90 s: {counts}, {run.summary()}"
    finally:
        run.close()
        server.kill()
    summary = run.summary()
    assert counts[("down", 1)] >= 5  # the file source kept producing while the camera was gone
    assert counts[("after", 0)] >= 5  # the RTSP source came back
    assert summary["sources"][0]["reconnects"] >= 1
    assert summary["sources"][0]["uri"] == server.url
