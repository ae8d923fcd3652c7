"""Video sources chosen by URI, in the idiom of jetson-inference.

``csi://0`` (Jetson CSI camera through GStreamer), ``v4l2:///dev/video0``,
``/dev/video0`` or a bare index ``0`` (USB cameras), ``rtsp://...``,
``http(s)://...`` (MJPEG or anything OpenCV's FFmpeg backend reads),
``file://clip.mp4`` or a plain video path, and a folder or glob of images
(a slideshow). :func:`open_source` picks the ``*Source`` class from the URI.

A source is opened with :meth:`Source.open` (a source that never opens is a
:class:`SourceError` naming its URI) and read with :meth:`Source.read`, which
returns a BGR frame, ``None`` at the end of the stream, or raises
:class:`FrameError` (a corrupt frame: skipped and counted by the caller) or
:class:`SourceError` (the connection failed: the capture thread reconnects).
"""
from __future__ import annotations

import glob
import math
import os
import re
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import ConfigError, ImageError, VggEdgeError
from ..image_header import image_size
from ..preprocess import IMAGE_SUFFIXES, read_image
from ..redact import redact_uri
from . import opencv_io
from .opencv_io import csi_pipeline

#: FFmpeg options for RTSP: TCP transport, no input buffering, low-delay decoding
#: (the fix for camera latency that grows to seconds). Format: ``key;value|key;value``.
RTSP_LOW_LATENCY = "rtsp_transport;tcp|fflags;nobuffer|flags;low_delay|max_delay;0"
_ENV_LOCK = threading.Lock()  # OPENCV_FFMPEG_CAPTURE_OPTIONS is process-wide: set it per open under a lock


class SourceError(VggEdgeError):
    """A video source cannot be opened or its connection failed; the message names the URI."""


class FrameError(VggEdgeError):
    """One frame could not be decoded; the stream goes on (the frame is skipped and counted)."""


@dataclass(frozen=True)
class SourceOptions:
    """What a user may ask of any source.

    ``width``/``height``/``rate``: requested capture size and frame rate (cameras
    are asked for them; other sources are resized to ``width`` x ``height``
    when given). ``loop``: restart files and slideshows at their end.
    ``read_timeout``: seconds without a frame before a live read counts as stalled.
    ``open_timeout``: seconds FFmpeg may take to open a network stream.
    ``low_latency``: RTSP through :data:`RTSP_LOW_LATENCY`.
    """

    width: Optional[int] = None
    height: Optional[int] = None
    rate: Optional[float] = None
    loop: bool = False
    read_timeout: float = 5.0
    open_timeout: float = 10.0
    low_latency: bool = True

    def __post_init__(self) -> None:
        for name, flag in (("width", "--input-width"), ("height", "--input-height")):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or not 1 <= value <= MAX_SIDE):
                raise ConfigError(f"{flag} {value!r}: expected a whole number of pixels from 1 to {MAX_SIDE}")
        checks = (("rate", "--input-rate", 1000.0), ("read_timeout", "--read-timeout", 86400.0),
                  ("open_timeout", "open_timeout", 86400.0))
        for name, flag, top in checks:
            value = getattr(self, name)
            if name == "rate" and value is None:
                continue
            if not is_number(value) or not 0 < value <= top:
                raise ConfigError(f"{flag} {value!r}: expected a number > 0 and <= {top:g}")


MAX_SIDE = 16384  #: the largest frame side a source may be asked for
MAX_SLIDE_PIXELS = 100_000_000  #: larger slideshow images are skipped as corrupt frames, never decoded


def is_number(value: object) -> bool:
    """A finite int or float (not a bool, NaN or infinity)."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def require_backend(uri: str, backend: str) -> None:
    """Raise SourceError naming the URI when OpenCV was built without ``backend``."""
    if not opencv_io.opencv_backends().get(backend, False):
        hints = {"GSTREAMER": "build OpenCV with GStreamer (JetPack's OpenCV has it; the PyPI wheels do not)",
                 "FFMPEG": "install opencv-python-headless from PyPI, which bundles FFmpeg",
                 "V4L": "use an OpenCV build with V4L2 (Linux)"}
        raise SourceError(f"{uri}: this OpenCV build has no {backend} video backend, which this source "
                          f"needs; {hints.get(backend, '')}")


class Source(ABC):
    """One video source. ``live`` sources (cameras, network streams) keep producing whether read or not."""

    kind = "source"
    live = False

    def __init__(self, uri: str, options: SourceOptions | None = None) -> None:
        self.location = uri  #: what is opened; never shown (it may hold credentials)
        self.uri = redact_uri(uri)  #: what messages, logs, stats and the preview show
        self.options = options or SourceOptions()

    @abstractmethod
    def open(self) -> None:
        """Open (or reopen) the source; raise SourceError naming the URI when it cannot."""

    @abstractmethod
    def read(self) -> np.ndarray | None:
        """The next BGR frame, None at the end; FrameError for a corrupt frame, SourceError on failure."""

    def close(self) -> None:
        """Release the device or connection (safe twice)."""

    @property
    def fps(self) -> float | None:
        """The native frame rate when known."""
        return self.options.rate

    def _sized(self, frame: np.ndarray) -> np.ndarray:
        """Resize to the requested width x height when both are given and differ."""
        import cv2

        w, h = self.options.width, self.options.height
        if w and h and frame.shape[:2] != (h, w):
            return cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
        return frame

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"


class CaptureSource(Source):
    """A source read by ``cv2.VideoCapture``; subclasses say what to open and with which backend."""

    backend = "FFMPEG"

    def __init__(self, uri: str, options: SourceOptions | None = None) -> None:
        super().__init__(uri, options)
        self._cap = None
        self._failed_at: float | None = None  #: the position of the last failed grab (files)

    def target(self) -> str | int:
        """What to pass to ``cv2.VideoCapture``."""
        return self.location

    def _capture(self):
        import cv2

        api = {"FFMPEG": cv2.CAP_FFMPEG, "GSTREAMER": cv2.CAP_GSTREAMER, "V4L": cv2.CAP_V4L2}[self.backend]
        timeouts = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.options.open_timeout * 1000),
                    cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.options.read_timeout * 1000)]
        return cv2.VideoCapture(self.target(), api, timeouts if self.backend == "FFMPEG" else [])

    def open(self) -> None:
        import cv2

        require_backend(self.uri, self.backend)
        self._cap = None  # not release(): a stalled reader may still be inside it; the last reference frees it
        self._failed_at = None
        cap = self._capture()
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"{self.uri}: cannot open this {self.kind} source (OpenCV {self.backend} backend); "
                              f"{self.open_hint()}")
        o = self.options
        for prop, value in ((cv2.CAP_PROP_FRAME_WIDTH, o.width), (cv2.CAP_PROP_FRAME_HEIGHT, o.height),
                            (cv2.CAP_PROP_FPS, o.rate)):
            if value and self.live:
                cap.set(prop, value)
        if self.live:
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self._cap = cap

    def open_hint(self) -> str:
        """What to check when the source does not open."""
        return "check the URI, that it is reachable, and that the stream is running"

    def read(self) -> np.ndarray | None:
        if self._cap is None:
            raise SourceError(f"{self.uri}: read() before open()")
        ok = self._cap.grab()
        if not ok:
            if self._corrupt_inside():
                raise FrameError(f"{self.uri}: frame {self._failed_at} could not be decoded; reading on")
            return None
        self._failed_at = None
        ok, frame = self._cap.retrieve()
        if not ok or frame is None or frame.size == 0:
            raise FrameError(f"{self.uri}: a frame could not be decoded")
        return self._sized(frame)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def _corrupt_inside(self) -> bool:
        """After a failed grab in a file: True when frames remain (a corrupt frame, not the end of the file).

        The file's frame count says where the end is; a second failure at the same position is the end
        (or a run of damage the demuxer cannot pass), so this never loops.
        """
        import cv2

        if self.live:
            return False
        count = self._cap.get(cv2.CAP_PROP_FRAME_COUNT)
        position = self._cap.get(cv2.CAP_PROP_POS_FRAMES)
        if not (count and count > 0 and 0 <= position < count - 1) or position == self._failed_at:
            return False
        self._failed_at = position
        return True

    @property
    def fps(self) -> float | None:
        if self.options.rate:
            return self.options.rate
        if self._cap is not None:
            import cv2

            value = self._cap.get(cv2.CAP_PROP_FPS)
            return float(value) if value and 0 < value < 1000 else None
        return None


class FileSource(CaptureSource):
    """A video file (``file://clip.mp4`` or a plain path)."""

    kind = "video file"

    def __init__(self, uri: str, options: SourceOptions | None = None) -> None:
        super().__init__(uri, options)
        self.path = Path(uri[len("file://"):] if uri.startswith("file://") else uri)

    def target(self) -> str:
        return str(self.path)

    def open(self) -> None:
        if not self.path.is_file():
            raise SourceError(f"{self.uri}: no such video file")
        super().open()

    def open_hint(self) -> str:
        return "is it a video OpenCV's FFmpeg can decode (mp4, avi, mkv, ...)?"


class DeviceSource(CaptureSource):
    """A V4L2 camera: ``v4l2:///dev/video0``, ``/dev/video0`` or a bare index ``0``."""

    kind = "camera"
    live = True
    backend = "V4L"

    def __init__(self, uri: str, options: SourceOptions | None = None) -> None:
        super().__init__(uri, options)
        path = uri[len("v4l2://"):] if uri.startswith("v4l2://") else uri
        self.device: int | str = int(path) if path.isdigit() else path

    def target(self) -> int | str:
        if isinstance(self.device, str) and (m := re.fullmatch(r"/dev/video(\d+)", self.device)):
            return int(m.group(1))
        return self.device

    def open_hint(self) -> str:
        return "is the camera plugged in, is the device readable (video group), and is no other program using it?"


class NetworkSource(CaptureSource):
    """An ``rtsp://`` or ``http(s)://`` stream read by OpenCV's FFmpeg backend (RTSP with low-latency options)."""

    kind = "network stream"
    live = True

    def _capture(self):
        is_rtsp = self.location.lower().startswith("rtsp")
        if not (is_rtsp and self.options.low_latency):
            return super()._capture()
        with _ENV_LOCK:
            previous = os.environ.get("OPENCV_FFMPEG_CAPTURE_OPTIONS")
            os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = RTSP_LOW_LATENCY
            try:
                return super()._capture()
            finally:
                if previous is None:
                    os.environ.pop("OPENCV_FFMPEG_CAPTURE_OPTIONS", None)
                else:
                    os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = previous


class CsiSource(CaptureSource):
    """A Jetson CSI camera (``csi://0``) through :func:`csi_pipeline` and OpenCV's GStreamer backend."""

    kind = "CSI camera"
    live = True
    backend = "GSTREAMER"

    def target(self) -> str:
        sensor = self.uri[len("csi://"):] or "0"
        if not sensor.isdigit():
            raise SourceError(f"{self.uri}: expected csi://N with a sensor number N")
        o = self.options
        return csi_pipeline(int(sensor), o.width or 1280, o.height or 720, o.rate or 30.0)

    def open_hint(self) -> str:
        return "is nvargus-daemon running and the camera connected (try `gst-launch-1.0 nvarguscamerasrc ! fakesink`)?"


class ImageFolderSource(Source):
    """A slideshow of images from a folder or a glob (sorted); a corrupt image is a FrameError, then the next."""

    kind = "image folder"

    def __init__(self, uri: str, options: SourceOptions | None = None) -> None:
        super().__init__(uri, options)
        self.pattern = uri[len("file://"):] if uri.startswith("file://") else uri
        self.paths: list[Path] = []
        self._next = 0

    def open(self) -> None:
        base = Path(self.pattern)
        found = base.rglob("*") if base.is_dir() else (Path(p) for p in glob.glob(self.pattern, recursive=True))
        self.paths = sorted(p for p in found if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.paths:
            raise SourceError(f"{self.uri}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder or glob")
        self._next = 0

    def read(self) -> np.ndarray | None:
        if self._next >= len(self.paths):
            return None
        path = self.paths[self._next]
        self._next += 1
        try:
            with open(path, "rb") as handle:
                size = image_size(handle.read(64 * 1024))
            if size and size[0] * size[1] > MAX_SLIDE_PIXELS:
                raise FrameError(f"{path}: image is {size[0]}x{size[1]} pixels; over {MAX_SLIDE_PIXELS}, skipped")
            return self._sized(read_image(path))
        except (ImageError, OSError) as exc:
            raise FrameError(str(exc)) from None
        except Exception as exc:  # cv2.error, MemoryError: this image only, never the slideshow
            raise FrameError(f"{path}: cannot decode ({type(exc).__name__}: {str(exc)[:200]})") from None

    def current_name(self) -> str:
        """The file the last read came from."""
        return str(self.paths[self._next - 1]) if self._next else ""


def open_source(uri: str, options: SourceOptions | None = None) -> Source:
    """The ``*Source`` for a URI (not yet opened). See the module docstring for the URI forms."""
    text = str(uri).strip()
    lower = text.lower()
    if lower.startswith("csi://"):
        return CsiSource(text, options)
    if lower.startswith("v4l2://") or text.isdigit() or re.fullmatch(r"/dev/video\d+", text):
        return DeviceSource(text, options)
    if lower.startswith(("rtsp://", "rtsps://", "http://", "https://")):
        return NetworkSource(text, options)
    path = text[len("file://"):] if lower.startswith("file://") else text
    if "://" in path:
        raise SourceError(f"{redact_uri(text)}: unknown URI scheme; expected csi://, v4l2://, rtsp://, http(s)://, file:// "
                          "or a path")
    if Path(path).is_dir() or any(c in path for c in "*?[") or Path(path).suffix.lower() in IMAGE_SUFFIXES:
        return ImageFolderSource(text, options)
    return FileSource(text, options)


def wait_backoff(attempt: int, base: float = 0.25, cap: float = 8.0) -> float:
    """Seconds to wait before reconnect attempt ``attempt`` (0, 1, ...): doubling from ``base`` up to ``cap``."""
    return min(cap, base * (2 ** max(0, attempt)))


def sleep_unless(stop: threading.Event, seconds: float) -> bool:
    """Sleep up to ``seconds``; True if ``stop`` was set meanwhile."""
    return stop.wait(seconds) if seconds > 0 else stop.is_set()


def monotonic() -> float:
    """The clock every latency in the stream pipeline is measured on."""
    return time.monotonic()
