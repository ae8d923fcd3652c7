"""Sources chosen by URI, the CSI pipeline string, backend checks and open errors."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from vggedge.video import opencv_io, sources as src
from vggedge.video.sources import (CsiSource, DeviceSource, FileSource, FrameError, ImageFolderSource,
                                   NetworkSource, SourceError, SourceOptions, csi_pipeline, open_source)


@pytest.mark.parametrize("uri, cls", [
    ("csi://0", CsiSource), ("v4l2:///dev/video0", DeviceSource), ("/dev/video1", DeviceSource),
    ("0", DeviceSource), ("rtsp://user:pw@cam.local:554/stream", NetworkSource),
    ("http://127.0.0.1:8080/cam.mjpg", NetworkSource), ("https://x/y", NetworkSource),
    ("file:///videos/clip.mp4", FileSource), ("clip.mp4", FileSource), ("frames/*.jpg", ImageFolderSource),
    ("photo.png", ImageFolderSource),
])
def test_uri_picks_source(uri: str, cls: type) -> None:
    assert type(open_source(uri)) is cls


def test_folder_is_slideshow_and_unknown_scheme_rejected(tmp_path: Path) -> None:
    assert isinstance(open_source(str(tmp_path)), ImageFolderSource)
    assert isinstance(open_source(f"file://{tmp_path}"), ImageFolderSource)
    with pytest.raises(SourceError, match="webrtc://x: unknown URI scheme"):
        open_source("webrtc://x")


def test_device_targets() -> None:
    assert DeviceSource("v4l2:///dev/video2").target() == 2
    assert DeviceSource("/dev/video0").target() == 0
    assert DeviceSource("3").target() == 3
    assert DeviceSource("v4l2:///dev/v4l/by-id/usb-cam").target() == "/dev/v4l/by-id/usb-cam"


def test_csi_pipeline_string() -> None:
    text = csi_pipeline(1, 1920, 1080, 29.97, flip_method=2)
    assert text.startswith("nvarguscamerasrc sensor-id=1 ! video/x-raw(memory:NVMM)")
    assert "width=(int)1920, height=(int)1080" in text and "framerate=(fraction)2997/100" in text
    assert "nvvidconv flip-method=2" in text and text.endswith("appsink drop=true max-buffers=1 sync=false")
    assert "framerate=(fraction)30/1" in csi_pipeline()
    opts = SourceOptions(width=640, height=480, rate=60)
    assert CsiSource("csi://0", opts).target() == csi_pipeline(0, 640, 480, 60)


def test_build_info_parsing() -> None:
    text = "  Video I/O:\n    FFMPEG:                      YES\n    GStreamer:                   NO\n" \
           "    v4l/v4l2:                    YES (linux/videodev2.h)\n"
    assert opencv_io.backends_from_build_info(text) == {"FFMPEG": True, "GSTREAMER": False, "V4L": True}
    assert opencv_io.backends_from_build_info("nothing") == {"FFMPEG": False, "GSTREAMER": False, "V4L": False}


def test_missing_backend_names_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(opencv_io, "opencv_backends", lambda: {"FFMPEG": True, "GSTREAMER": False, "V4L": True})
    with pytest.raises(SourceError, match=r"csi://0: this OpenCV build has no GSTREAMER video backend"):
        CsiSource("csi://0").open()
    monkeypatch.setattr(opencv_io, "opencv_backends", lambda: {"FFMPEG": False, "GSTREAMER": False, "V4L": True})
    with pytest.raises(SourceError, match=r"rtsp://127.0.0.1:9/x: this OpenCV build has no FFMPEG"):
        NetworkSource("rtsp://127.0.0.1:9/x").open()


def test_never_opening_sources_are_named(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="nope.mp4: no such video file"):
        open_source(str(tmp_path / "nope.mp4")).open()
    with pytest.raises(SourceError, match=r"rtsp://127.0.0.1:9/none: cannot open this network stream source"):
        open_source("rtsp://127.0.0.1:9/none", SourceOptions(open_timeout=2)).open()
    with pytest.raises(SourceError, match=r"/dev/video99: cannot open this camera source"):
        open_source("/dev/video99").open()
    with pytest.raises(SourceError, match="no images"):
        open_source(str(tmp_path)).open()


def test_rtsp_opens_with_low_latency_ffmpeg_options(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []

    class FakeCapture:
        def __init__(self, target, api, params):
            seen.append((target, os.environ.get("OPENCV_FFMPEG_CAPTURE_OPTIONS"), params))

        def isOpened(self):
            return True

        def set(self, *a):
            return True

        def release(self):
            pass

    import cv2

    monkeypatch.setattr(cv2, "VideoCapture", FakeCapture)
    monkeypatch.delenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", raising=False)
    NetworkSource("rtsp://127.0.0.1/cam", SourceOptions(read_timeout=2, open_timeout=3)).open()
    NetworkSource("http://127.0.0.1/cam.mjpg").open()
    NetworkSource("rtsp://127.0.0.1/cam", SourceOptions(low_latency=False)).open()
    assert seen[0][1] == src.RTSP_LOW_LATENCY and "rtsp_transport;tcp" in seen[0][1] and "nobuffer" in seen[0][1]
    assert seen[0][2] == [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 3000, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 2000]
    assert seen[1][1] is None and seen[2][1] is None  # only RTSP, and only when asked
    assert "OPENCV_FFMPEG_CAPTURE_OPTIONS" not in os.environ  # restored after the open


def test_slideshow_sorted_resized_and_corrupt_reported(tmp_path: Path) -> None:
    import cv2

    for name in ("b.png", "a.jpg"):
        cv2.imwrite(str(tmp_path / name), np.full((20, 30, 3), 100, np.uint8))
    (tmp_path / "c.jpg").write_bytes(b"broken")
    source = ImageFolderSource(str(tmp_path), SourceOptions(width=16, height=8))
    source.open()
    assert [p.name for p in source.paths] == ["a.jpg", "b.png", "c.jpg"]
    assert source.read().shape == (8, 16, 3) and source.read() is not None
    with pytest.raises(FrameError, match="c.jpg: not a decodable image"):
        source.read()
    assert source.read() is None


def test_file_source_reads_all_frames(calib_clip: Path) -> None:
    source = FileSource(f"file://{calib_clip}")
    source.open()
    frames = []
    while (frame := source.read()) is not None:
        frames.append(frame)
    assert source.fps == pytest.approx(10.0)
    source.close()
    assert len(frames) == 36 and frames[0].shape == (120, 160, 3)


def test_backoff_doubles_to_cap() -> None:
    assert [src.wait_backoff(i) for i in range(7)] == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 8.0]


def test_a_corrupt_frame_mid_video_is_not_the_end(tmp_path: Path) -> None:
    """Issue 23: one damaged frame in a file is a FrameError (counted), and the frames after it are read."""
    from clips import calib_frames, write_clip

    from vggedge.video.sources import FrameError, open_source

    data = bytearray(write_clip(tmp_path / "clip.avi", calib_frames()).read_bytes())
    starts = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xD8]
    total = len(starts)
    at = starts[total // 3]
    data[at:at + 400] = bytes(400)  # frame 12's JPEG header is gone
    (tmp_path / "bad.avi").write_bytes(bytes(data))
    source = open_source(str(tmp_path / "bad.avi"))
    source.open()
    good, corrupt = 0, 0
    for _ in range(3 * total):  # bounded: the source must end by itself
        try:
            frame = source.read()
        except FrameError as exc:
            corrupt += 1
            assert "could not be decoded" in str(exc)
            continue
        if frame is None:
            break
        good += 1
    else:
        pytest.fail("the source never ended")
    assert (good, corrupt) == (total - 1, 1)
