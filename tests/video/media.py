"""Test media servers on 127.0.0.1: an MJPEG-over-HTTP camera and an RTSP server fed by ffmpeg."""
from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False


class MjpegServer:
    """Serves ``frames`` in a loop as multipart/x-mixed-replace JPEG at ``fps`` (a network camera)."""

    def __init__(self, frames: Sequence[np.ndarray], fps: float = 20.0, port: int | None = None) -> None:
        self.jpegs = [cv2.imencode(".jpg", f)[1].tobytes() for f in frames]
        self.fps, self.port = fps, port or free_port()
        self.sent = 0
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/cam.mjpg"

    def start(self) -> "MjpegServer":
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i = 0
                try:
                    while owner._server is server:
                        jpeg = owner.jpegs[i % len(owner.jpegs)]
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
                        self.wfile.flush()
                        owner.sent += 1
                        i += 1
                        time.sleep(1.0 / owner.fps)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        ThreadingHTTPServer.allow_reuse_address = True
        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Cut every connection mid-stream and stop listening."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()


GST_SERVER = Path(__file__).with_name("gst_rtsp_server.py")
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's python3-gi lives there, not in the venv


def make_h264_clip(path: Path, seconds: int = 60, size: str = "320x240", rate: int = 25) -> Path:
    """A generated H.264 MP4 test pattern, written by Debian's ffmpeg."""
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc=size={size}:rate={rate}", "-t", str(seconds), "-c:v", "libx264", "-g", str(rate),
                    "-pix_fmt", "yuv420p", "-tune", "zerolatency", str(path)], check=True, timeout=120)
    return path


class RtspServer:
    """GStreamer's RTSP server (gst-rtsp-server through PyGObject) on 127.0.0.1 serving ``clip``; kill() and start() again.

    rtsp-server-perl was tried first: it hands clients RTP over UDP only, while
    vggedge opens RTSP over TCP by default (the low-latency options).
    """

    def __init__(self, clip: Path, name: str = "cam") -> None:
        self.clip, self.name, self.port = clip, name, free_port()
        self._proc: subprocess.Popen | None = None

    @staticmethod
    def available() -> str | None:
        """None when ffmpeg and GStreamer's RTSP server (python3-gi) are installed, else why not."""
        if shutil.which("ffmpeg") is None:
            return "ffmpeg is not installed (apt-get install -y ffmpeg)"
        probe = subprocess.run([SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); "
                                "gi.require_version('Gst', '1.0'); from gi.repository import Gst, GstRtspServer; "
                                "Gst.init(None); missing = [e for e in ('qtdemux', 'h264parse', 'rtph264pay') "
                                "if Gst.ElementFactory.find(e) is None]; assert not missing, missing"],
                               capture_output=True)
        if probe.returncode != 0:
            return ("GStreamer's RTSP server is not installed (apt-get install -y python3-gi "
                    "gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp gstreamer1.0-plugins-good gstreamer1.0-plugins-bad)")
        return None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/{self.name}"

    def start(self) -> "RtspServer":
        self._proc = subprocess.Popen([SYSTEM_PYTHON, str(GST_SERVER), str(self.port), self.name, str(self.clip)],
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        if self._proc.stdout.readline().strip() != "ready" or not wait_port(self.port):
            self.kill()
            raise RuntimeError(f"the RTSP server did not start on port {self.port}")
        return self

    def kill(self) -> None:
        """Kill the server at once (a camera going away mid-stream)."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(timeout=10)
            self._proc = None
