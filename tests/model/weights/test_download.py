"""Tests of vggedge.model.weights.download against a real HTTP server on 127.0.0.1."""
from __future__ import annotations

import hashlib
import http.server
import logging
import os
import re
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

from vggedge.errors import DownloadError
from vggedge.model.weights import download as dl
from vggedge.model.weights.download import PublishedWeights, cache_dir, download, verify_file

DATA = os.urandom(3 * 1024 * 1024 + 12345)
SHA256 = hashlib.sha256(DATA).hexdigest()
MD5 = hashlib.md5(DATA).hexdigest()
FILENAME = "weights.bin"


@dataclass
class Behaviour:
    """What the handler does; set per test."""

    status: int = 200  # 404 -> not found
    honour_range: bool = True
    cut_after: int | None = None  # bytes sent before the connection is cut, first GET only
    cuts_left: int = 0
    requests: list[str | None] = field(default_factory=list)  # Range header of each GET


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection: closing it ends the body

    def log_message(self, *args: object) -> None:  # keep pytest output quiet
        pass

    def do_GET(self) -> None:
        b: Behaviour = self.server.behaviour  # type: ignore[attr-defined]
        rng = self.headers.get("Range")
        b.requests.append(rng)
        if b.status != 200:
            self.send_error(b.status)
            return
        start = 0
        m = re.fullmatch(r"bytes=(\d+)-", rng or "")
        if m and b.honour_range:
            start = int(m.group(1))
            if start >= len(DATA):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(DATA)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(DATA) - 1}/{len(DATA)}")
        else:
            self.send_response(200)
        body = DATA[start:]
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if b.cut_after is not None and b.cuts_left > 0:
            b.cuts_left -= 1
            self.wfile.write(body[: b.cut_after])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture(scope="module")
def server() -> Iterator[http.server.ThreadingHTTPServer]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    srv.behaviour = Behaviour()  # type: ignore[attr-defined]
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    t.join(5)


@pytest.fixture
def behaviour(server: http.server.ThreadingHTTPServer, monkeypatch: pytest.MonkeyPatch) -> Behaviour:
    monkeypatch.setattr(dl, "_RETRY_BACKOFF_S", 0.0)
    server.behaviour = Behaviour()  # type: ignore[attr-defined]
    return server.behaviour  # type: ignore[attr-defined]


@pytest.fixture
def url(server: http.server.ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/{FILENAME}"


def entry(algorithm: str = "sha256", digest: str | None = SHA256, prefix: bool = False) -> PublishedWeights:
    return PublishedWeights("test", "http://invalid.invalid/x", FILENAME, algorithm, digest, prefix, "test")


def get(e: PublishedWeights, tmp_path: Path, url: str, **kw: object) -> Path:
    return download(e, tmp_path, url=url, progress=False, timeout=5.0, **kw)  # type: ignore[arg-type]


def assert_clean(tmp_path: Path, final_present: bool) -> None:
    assert not (tmp_path / (FILENAME + ".part")).exists()
    assert (tmp_path / FILENAME).exists() is final_present


def test_good_hash(behaviour: Behaviour, url: str, tmp_path: Path) -> None:
    p = get(entry(), tmp_path, url)
    assert p == tmp_path / FILENAME and p.read_bytes() == DATA
    assert_clean(tmp_path, True)
    assert behaviour.requests == [None]


def test_good_md5(behaviour: Behaviour, url: str, tmp_path: Path) -> None:
    assert get(entry("md5", MD5), tmp_path, url).read_bytes() == DATA


def test_bad_hash(behaviour: Behaviour, url: str, tmp_path: Path) -> None:
    wrong = "0" * 64
    with pytest.raises(DownloadError) as ei:
        get(entry(digest=wrong), tmp_path, url)
    msg = str(ei.value)
    assert wrong in msg and SHA256 in msg and "sha256" in msg and url in msg and FILENAME in msg
    assert_clean(tmp_path, False)


def test_truncated_then_resumed(behaviour: Behaviour, url: str, tmp_path: Path) -> None:
    behaviour.cut_after, behaviour.cuts_left = 1_000_000, 1
    assert get(entry(), tmp_path, url).read_bytes() == DATA
    assert behaviour.requests == [None, "bytes=1000000-"]
    assert_clean(tmp_path, True)


def test_range_ignored_restarts(behaviour: Behaviour, url: str, tmp_path: Path) -> None:
    behaviour.cut_after, behaviour.cuts_left, behaviour.honour_range = 700_000, 1, False
    assert get(entry(), tmp_path, url).read_bytes() == DATA
    assert behaviour.requests == [None, "bytes=700000-"]
    assert_clean(tmp_path, True)


def test_every_attempt_truncated(behaviour: Behaviour, url: str, tmp_path: Path) -> None:
    behaviour.cut_after, behaviour.cuts_left, behaviour.honour_range = 1000, 99, False
    with pytest.raises(DownloadError, match="after 2 attempts"):
        get(entry(), tmp_path, url, retries=2)
    assert not (tmp_path / FILENAME).exists()


def test_stale_oversized_part_restarts(behaviour: Behaviour, url: str, tmp_path: Path) -> None:
    (tmp_path / (FILENAME + ".part")).write_bytes(DATA + b"junk")
    assert get(entry(), tmp_path, url).read_bytes() == DATA
    assert behaviour.requests == [f"bytes={len(DATA) + 4}-", None]
    assert_clean(tmp_path, True)


def test_stale_wrong_part_restarts(behaviour: Behaviour, url: str, tmp_path: Path) -> None:
    (tmp_path / (FILENAME + ".part")).write_bytes(b"x" * 5000)
    assert get(entry(), tmp_path, url).read_bytes() == DATA
    assert behaviour.requests == ["bytes=5000-", None]


def test_404(behaviour: Behaviour, url: str, tmp_path: Path) -> None:
    behaviour.status = 404
    with pytest.raises(DownloadError, match="404") as ei:
        get(entry(), tmp_path, url)
    assert url in str(ei.value)
    assert behaviour.requests == [None]  # not retried
    assert_clean(tmp_path, False)


def test_connection_refused(behaviour: Behaviour, tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match=f"127.0.0.1:{port}/"):
        get(entry(), tmp_path, f"http://127.0.0.1:{port}/x", retries=2)
    assert_clean(tmp_path, False)


def test_existing_valid_file_no_request(behaviour: Behaviour, url: str, tmp_path: Path) -> None:
    (tmp_path / FILENAME).write_bytes(DATA)
    assert get(entry(), tmp_path, url) == tmp_path / FILENAME
    assert behaviour.requests == []


def test_existing_corrupt_file_redownloaded(
    behaviour: Behaviour, url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / FILENAME).write_bytes(b"corrupt")
    with caplog.at_level(logging.WARNING, logger=dl.__name__):
        assert get(entry(), tmp_path, url).read_bytes() == DATA
    assert behaviour.requests == [None]
    assert "does not verify" in caplog.text
    assert_clean(tmp_path, True)


def test_prefix_digest(behaviour: Behaviour, url: str, tmp_path: Path) -> None:
    assert get(entry(digest=SHA256[:8], prefix=True), tmp_path, url).read_bytes() == DATA
    with pytest.raises(DownloadError, match="prefix"):
        get(entry(digest="ffffffff" if not SHA256.startswith("ff") else "00000000", prefix=True),
            tmp_path / "b", url)


def test_no_published_hash_warns(
    behaviour: Behaviour, url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger=dl.__name__):
        assert get(entry(digest=None), tmp_path, url).read_bytes() == DATA
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any(SHA256 in r.getMessage() and "no published hash" in r.getMessage() for r in warned)


def test_expected_sha256_override(behaviour: Behaviour, url: str, tmp_path: Path) -> None:
    assert get(entry(digest=None), tmp_path, url, expected_sha256=SHA256.upper()).read_bytes() == DATA
    with pytest.raises(DownloadError, match="0{64}"):
        get(entry(digest=None), tmp_path / "b", url, expected_sha256="0" * 64)


def test_unknown_name(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="keras.*npz.*torchvision"):
        download("vgg19", tmp_path, progress=False)


def test_verify_file(tmp_path: Path) -> None:
    p = tmp_path / FILENAME
    p.write_bytes(DATA)
    assert verify_file(p, entry()) == SHA256
    with pytest.raises(DownloadError):
        verify_file(p, entry(digest="1" * 64))
    with pytest.raises(DownloadError):
        verify_file(tmp_path / "missing", entry())


def test_registry() -> None:
    k, t, n = dl.REGISTRY["keras"], dl.REGISTRY["torchvision"], dl.REGISTRY["npz"]
    assert (k.algorithm, k.digest, k.digest_is_prefix) == ("md5", "64373286793e3c8b2b4e3219cbf3544b", False)
    assert k.filename == k.url.rsplit("/", 1)[1] == "vgg16_weights_tf_dim_ordering_tf_kernels.h5"
    assert (t.algorithm, t.digest, t.digest_is_prefix, t.filename) == (
        "sha256", "397923af", True, "vgg16-397923af.pth")
    assert n.digest is None and n.filename == "vgg16_weights.npz"


def test_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VGGEDGE_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("VGGEDGE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_dir() == tmp_path / "x" / "vggedge"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "vggedge"


def test_default_dest_is_cache(
    behaviour: Behaviour, url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VGGEDGE_CACHE", str(tmp_path))
    p = download(entry(), url=url, progress=False)
    assert p == tmp_path / "weights" / FILENAME and p.read_bytes() == DATA


def test_invalid_url_is_download_error(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="not a url"):
        download(entry(), tmp_path, url="not a url", progress=False, retries=1)
