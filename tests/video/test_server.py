"""The live preview: HTTP endpoints, Prometheus text, and the page in a real headless Chromium."""
from __future__ import annotations

import json
import os
import shutil
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("aiohttp", reason="the preview needs aiohttp (pip install 'vggedge[stream]')")
pytest.importorskip("prometheus_client", reason="the preview needs prometheus-client (pip install 'vggedge[stream]')")

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from clips import calib_frames, write_clip  # noqa: E402
from vggedge.apps.stream import stream  # noqa: E402
from vggedge.errors import ConfigError  # noqa: E402
from vggedge.video.server import PreviewServer, parse_address  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def get(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_parse_address() -> None:
    assert parse_address("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_address(":9000") == ("127.0.0.1", 9000) and parse_address("9000") == ("127.0.0.1", 9000)
    assert parse_address("[::1]:80") == ("::1", 80)
    with pytest.raises(ConfigError, match="HOST:PORT"):
        parse_address("localhost:http")


class Background:
    """Runs a stream in a thread until stopped (the preview's producer)."""

    def __init__(self, run) -> None:
        self.run, self.results, self.error = run, [], None
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        try:
            for result in self.run:
                self.results.append(result)
        except BaseException as exc:  # shown by the test
            self.error = exc

    def __enter__(self) -> "Background":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.run.close()  # from another thread: the stream ends and cleans up in its own thread
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()


@pytest.fixture()
def live_preview(stream_model: Path, calib_clip: Path, tmp_path: Path):
    wide = write_clip(tmp_path / "wide.avi", calib_frames((320, 240))[::-1])
    run = stream([str(calib_clip), str(wide)], stream_model, pace=True, loop=True)
    server = PreviewServer([s.uri for s in run.sources], run.stats, port=0)
    run.sinks.append(server.start())
    with Background(run) as bg:
        deadline = time.monotonic() + 30
        while len(bg.results) < 6 and time.monotonic() < deadline and bg.error is None:
            time.sleep(0.1)
        assert bg.error is None and len(bg.results) >= 6, bg.error
        yield server, bg


def test_endpoints(live_preview) -> None:
    server, bg = live_preview
    status, page = get(server.url)
    assert status == 200 and b'src="/video/0.mjpg"' in page and b'src="/video/1.mjpg"' in page
    status, body = get(server.url + "healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"
    status, body = get(server.url + "api/state")
    state = json.loads(body)
    assert {s["source"] for s in state["sources"]} == {0, 1} and len(state["sources"][0]["top_k"]) == 5
    status, body = get(server.url + "metrics")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    classified = {s.labels["source"]: s.value for s in families["vggedge_stream_classified"].samples
                  if s.name.endswith("_total")}
    assert classified["0"] >= 1 and classified["1"] >= 1
    stages = {s.labels["stage"] for s in families["vggedge_stream_latency_seconds"].samples}
    assert {"e2e", "infer", "prepare", "wait"} <= stages
    assert "vggedge_stream_dropped" in families and "vggedge_stream_fps" in families
    assert get(server.url + "video/7.mjpg")[0] == 404
    assert get(server.url + "video/%C2%B2.mjpg")[0] == 404  # a superscript two: a digit, but not an int()
    assert get(server.url + "video/%D9%A1.mjpg")[0] == 404  # an Arabic-Indic one
    with urllib.request.urlopen(server.url + "video/0.mjpg", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        head = response.read(2048)
    assert b"--frame" in head and b"\xff\xd8" in head  # a JPEG part


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (apt-get install -y chromium)")
def test_page_in_headless_chromium(live_preview, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright not installed (pip install playwright)")
    server, bg = live_preview
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 520})
            page.goto(server.url)
            page.wait_for_function("document.querySelectorAll('#top-0 li').length === 5", timeout=20000)
            # the MJPEG stream shows: the <img> has decoded a frame of the source's size
            page.wait_for_function("document.getElementById('video-0').naturalWidth === 160", timeout=20000)
            first = page.inner_text("#info-0")
            page.wait_for_function(f"document.getElementById('info-0').innerText !== {json.dumps(first)}",
                                   timeout=20000)  # the live text updates
            assert "FPS" in page.inner_text("#info-0")
            assert len(page.inner_text("#top-1").splitlines()) == 5
            page.wait_for_function("document.getElementById('video-1').naturalWidth === 320", timeout=20000)
            shot = tmp_path / "preview.png"
            page.screenshot(path=str(shot))
            assert shot.stat().st_size > 1000
            docs = REPO / "docs" / "stream-preview.png"
            if docs.parent.is_dir() and not docs.exists():
                shutil.copy(shot, docs)  # the README's screenshot, made once
        finally:
            browser.close()


HOSTILE = '<img src=x onerror="document.title=\'pwned\'"><b>bold</b>'


@pytest.fixture()
def hostile_preview(stream_model: Path, calib_clip: Path, tmp_path: Path):
    """The preview of a model whose label file holds HTML (a label file named in the sidecar is any text)."""
    from vggedge.spec import spec_path_for

    model = tmp_path / "hostile" / stream_model.name
    model.parent.mkdir()
    os.link(stream_model, model)
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"{HOSTILE}{i}\n" for i in range(1000)))
    sidecar = json.loads(spec_path_for(stream_model).read_text())
    sidecar["labels"] = str(labels)
    spec_path_for(model).write_text(json.dumps(sidecar))
    run = stream([str(calib_clip)], model, pace=True, loop=True)
    server = PreviewServer([s.uri for s in run.sources], run.stats, port=0)
    run.sinks.append(server.start())
    with Background(run) as bg:
        deadline = time.monotonic() + 30
        while len(bg.results) < 2 and time.monotonic() < deadline and bg.error is None:
            time.sleep(0.1)
        assert bg.error is None and bg.results and HOSTILE in bg.results[0].top_k[0].label, bg.error
        yield server


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (apt-get install -y chromium)")
def test_labels_are_text_and_foreign_hosts_are_refused_in_chromium(hostile_preview) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright not installed (pip install playwright)")
    server = hostile_preview
    with sync_api.sync_playwright() as p:
        # evil.test resolves to the preview, as a DNS-rebinding attacker's name would
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--no-sandbox", "--host-resolver-rules=MAP evil.test 127.0.0.1"])
        try:
            page = browser.new_page()
            page.goto(server.url)
            page.wait_for_function("document.querySelectorAll('#top-0 li').length === 5", timeout=20000)
            page.wait_for_timeout(500)  # an onerror handler would have run by now
            assert page.title() == "vggedge stream"
            assert page.evaluate("document.querySelectorAll('#top-0 img, #top-0 b').length") == 0
            assert HOSTILE in page.inner_text("#top-0")  # shown as the text it is
            response = page.goto(f"http://evil.test:{server.port}/")
            assert response.status == 403 and "DNS-rebinding" in page.inner_text("body")
            assert page.goto(f"http://localhost:{server.port}/healthz").status == 200
        finally:
            browser.close()


def test_credentials_never_leave_the_process(stream_model: Path, calib_clip: Path, tmp_path: Path) -> None:
    """A source URL with user:password: not on the page, /metrics, /api/state, /events, /healthz or --json lines."""
    import http.server
    import socket

    from vggedge.video.sinks import JsonLinesSink

    data = calib_clip.read_bytes()

    class Clip(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "video/x-msvideo")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            try:
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Clip)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    uri = f"http://viewer:s3cret@127.0.0.1:{httpd.server_address[1]}/clip.avi"
    lines = tmp_path / "frames.jsonl"
    try:
        run = stream([uri], stream_model, max_frames=4)
        server = PreviewServer([s.uri for s in run.sources], run.stats, port=0)
        run.sinks += [JsonLinesSink(str(lines)), server.start()]
        with Background(run) as bg:
            deadline = time.monotonic() + 30
            while len(bg.results) < 2 and time.monotonic() < deadline and bg.error is None:
                time.sleep(0.1)
            assert bg.error is None and bg.results, bg.error
            bodies = [get(server.url + path)[1] for path in ("", "metrics", "api/state", "healthz")]
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
                sock.sendall(f"GET /events HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
                bodies.append(sock.recv(65536))
    finally:
        httpd.shutdown()
        httpd.server_close()
    bodies.append(lines.read_bytes())
    for body in bodies:
        assert b"s3cret" not in body, body[:500]
    assert b"viewer:***@127.0.0.1" in bodies[0] and b"viewer:***@" in bodies[2] and b"viewer:***@" in bodies[-1]
