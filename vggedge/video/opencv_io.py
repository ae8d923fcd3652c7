"""What OpenCV's video I/O can do here: its backends (FFmpeg, GStreamer, V4L2), and the GStreamer pipeline
of a Jetson CSI camera."""
from __future__ import annotations

import functools
import re


def csi_pipeline(sensor_id: int = 0, width: int = 1280, height: int = 720, rate: float = 30.0,
                 flip_method: int = 0) -> str:
    """The GStreamer pipeline string for a Jetson CSI camera (``nvarguscamerasrc``) ending in a BGR appsink.

    The appsink keeps one buffer and drops older ones, so the camera never queues latency.
    """
    num, den = _fraction(rate)
    return (f"nvarguscamerasrc sensor-id={int(sensor_id)} ! "
            f"video/x-raw(memory:NVMM), width=(int){int(width)}, height=(int){int(height)}, "
            f"format=(string)NV12, framerate=(fraction){num}/{den} ! "
            f"nvvidconv flip-method={int(flip_method)} ! video/x-raw, format=(string)BGRx ! "
            "videoconvert ! video/x-raw, format=(string)BGR ! appsink drop=true max-buffers=1 sync=false")


def _fraction(rate: float) -> tuple[int, int]:
    """30 -> (30, 1); 29.97 -> (2997, 100)."""
    if float(rate).is_integer():
        return int(rate), 1
    return round(rate * 100), 100


@functools.lru_cache(maxsize=1)
def opencv_backends() -> dict[str, bool]:
    """Which OpenCV video backends this build has: ``{"FFMPEG": True, "GSTREAMER": False, ...}``."""
    import cv2

    return backends_from_build_info(cv2.getBuildInformation())


def backends_from_build_info(text: str) -> dict[str, bool]:
    """Parse the "Video I/O" part of ``cv2.getBuildInformation()``."""
    found = {}
    for name in ("FFMPEG", "GStreamer", "v4l/v4l2"):
        match = re.search(rf"^\s*{re.escape(name)}:\s*(\S+)", text, re.MULTILINE | re.IGNORECASE)
        found[name.upper().split("/")[0]] = bool(match) and match.group(1).upper() not in ("NO", "OFF")
    found["V4L"] = found.pop("V4L")
    return found
