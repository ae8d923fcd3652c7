"""Shared fixtures of the faults suite: a small model exported through the CLI, fresh folders of it and of photos,
and a slow HTTP server.

Every fault test drives ``vggedge`` as a user would (a child process, real files)
and asserts three things: the message, the exit status, and the files left behind.
"""
from __future__ import annotations

import http.server
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
from faultkit import CALIB, SMALL, vggedge


@pytest.fixture(scope="session")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The small FP32 model and its sidecar, exported once through the CLI."""
    folder = tmp_path_factory.mktemp("faults-model")
    result = vggedge("export", *SMALL, "--out", folder / "m.onnx")
    assert result.returncode == 0, result.stderr
    yield folder / "m.onnx"
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def top_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A 32x32 model with its 10-class top, exported through the CLI (classify and stream outputs)."""
    folder = tmp_path_factory.mktemp("top")
    result = vggedge("export", "--weights", "random:3", "--input-shape", "32,32,3", "--include-top",
                     "--num-classes", "10", "--out", folder / "m.onnx")
    assert result.returncode == 0, result.stderr
    yield folder / "m.onnx"
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def slow_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The same weights at 224x224: an INT8 build long enough (10+ s) to interrupt at 1, 3 and 10 s."""
    folder = tmp_path_factory.mktemp("faults-model-224")
    result = vggedge("export", *SMALL, "--input-shape", "224,224,3", "--out", folder / "m.onnx")
    assert result.returncode == 0, result.stderr
    yield folder / "m.onnx"
    shutil.rmtree(folder, ignore_errors=True)


def _fresh_copy(model: Path, folder: Path) -> Path:
    folder.mkdir()
    try:
        os.link(model, folder / model.name)  # hard link: no 59 MB copy; artefacts are written beside it
    except OSError:
        shutil.copy(model, folder / model.name)
    shutil.copy(model.with_name("m.spec.json"), folder / "m.spec.json")
    return folder / model.name


@pytest.fixture
def model_copy(small_model: Path, tmp_path: Path) -> Iterator[Path]:
    """A fresh folder holding the small model and its sidecar."""
    yield _fresh_copy(small_model, tmp_path / "model")
    shutil.rmtree(tmp_path / "model", ignore_errors=True)  # artefacts are tens of MB: do not keep them


@pytest.fixture
def slow_model_copy(slow_model: Path, tmp_path: Path) -> Iterator[Path]:
    """A fresh folder holding the 224x224 model and its sidecar."""
    yield _fresh_copy(slow_model, tmp_path / "model224")
    shutil.rmtree(tmp_path / "model224", ignore_errors=True)


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """A folder with copies of the 12 calib/ photographs."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for path in sorted(CALIB.glob("*.jpg")):
        shutil.copy(path, folder / path.name)
    return folder


class _Slow(http.server.BaseHTTPRequestHandler):
    """/drip: one byte every 0.3 s forever; /big: a chunked body without end; /huge: Content-Length 2 GiB."""

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        try:
            if self.path.startswith("/huge"):
                self.send_response(200)
                self.send_header("Content-Length", str(2**31))
                self.end_headers()
                self.wfile.write(b"\xff\xd8" + bytes(1 << 16))
            elif self.path.startswith("/big"):
                self.send_response(200)
                self.end_headers()
                while True:
                    self.wfile.write(bytes(1 << 16))
            else:
                self.send_response(200)
                self.end_headers()
                for _ in range(200):
                    self.wfile.write(b"\xff")
                    self.wfile.flush()
                    time.sleep(0.3)
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture
def slow_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://user:pw@127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
