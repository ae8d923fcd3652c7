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


class RtspServer:
    """Debian's rtsp-server-perl on 127.0.0.1 with ffmpeg publishing ``clip`` in a loop; kill() and start() again."""

    def __init__(self, clip: Path, name: str = "cam") -> None:
        self.clip, self.name = clip, name
        self.client_port, self.source_port = free_port(), free_port()
        self._procs: list[subprocess.Popen] = []

    @staticmethod
    def available() -> str | None:
        """None when rtsp-server-perl and ffmpeg are installed, else why not."""
        missing = [b for b in ("rtsp-server-perl", "ffmpeg") if shutil.which(b) is None]
        return f"{', '.join(missing)} not installed (apt-get install -y rtsp-server-perl ffmpeg)" if missing else None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.client_port}/{self.name}"

    def start(self) -> "RtspServer":
        server = subprocess.Popen(["rtsp-server-perl", "--clientport", str(self.client_port), "--serverport",
                                   str(self.source_port), "--client_listen_address", "127.0.0.1",
                                   "--source_listen_address", "127.0.0.1", "--loglevel", "1"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._procs.append(server)
        if not wait_port(self.source_port) or not wait_port(self.client_port):
            self.kill()
            raise RuntimeError("rtsp-server-perl did not start listening")
        publisher = subprocess.Popen(["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1",
                                      "-i", str(self.clip), "-c", "copy", "-f", "rtsp",
                                      f"rtsp://127.0.0.1:{self.source_port}/{self.name}"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._procs.append(publisher)
        time.sleep(1.0)  # the publisher announces the stream
        return self

    def kill(self) -> None:
        """Kill the server and the publisher at once (a camera going away mid-stream)."""
        for proc in self._procs:
            proc.kill()
        for proc in self._procs:
            proc.wait(timeout=10)
        self._procs.clear()
