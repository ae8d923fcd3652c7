"""Live web preview of a stream (aiohttp): annotated MJPEG per source, live top-5, /metrics, /healthz.

``GET /``: one HTML page with each source's ``<img src="/video/N.mjpg">`` and its
top-5 list, updated by server-sent events from ``/events``; ``/video/N.mjpg``:
``multipart/x-mixed-replace`` JPEG stream; ``/api/state``: the latest top-5 as JSON;
``/metrics``: Prometheus text (prometheus-client); ``/healthz``: JSON status
(503 while a source is disconnected). Needs ``pip install 'vggedge[stream]'``.
"""
from __future__ import annotations

import asyncio
import errno
import json
import logging
import threading
from typing import Any, Callable

from ..errors import BackendUnavailable, ConfigError, VggEdgeError
from ..redact import redact_uri
from .annotate import annotate

log = logging.getLogger(__name__)

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>vggedge stream</title>
<style>body{font-family:sans-serif;background:#111;color:#eee;margin:1em}
.src{display:inline-block;vertical-align:top;margin:0 1em 1em 0}
img{max-width:640px;border:1px solid #444;display:block}
h2{font-size:1em;max-width:460px;overflow-wrap:anywhere}
ol{font-family:monospace}</style></head><body>
<h1>vggedge stream</h1><div id="sources">%(sources)s</div>
<script>
const es = new EventSource("/events");
es.onmessage = (ev) => {
  const state = JSON.parse(ev.data);
  for (const s of state.sources) {
    const ol = document.getElementById("top-" + s.source);
    if (!ol) continue;
    ol.replaceChildren(...s.top_k.map(p => {  // labels come from files: inserted as text, never as HTML
      const li = document.createElement("li");
      li.textContent = `${p.label} ${p.score.toFixed(3)}`;
      return li;
    }));
    document.getElementById("info-" + s.source).textContent =
      `frame ${s.frame} · ${s.fps.toFixed(1)} FPS · ${s.latency_ms.toFixed(0)} ms`;
  }
};
</script></body></html>
"""
SOURCE_BLOCK = """<div class="src" id="src-%(i)d"><h2>source %(i)d: %(uri)s</h2>
<img id="video-%(i)d" src="/video/%(i)d.mjpg" alt="source %(i)d">
<div id="info-%(i)d">waiting for frames</div><ol id="top-%(i)d"></ol></div>"""


def parse_address(text: str) -> tuple[str, int]:
    """``127.0.0.1:8080``, ``:8080`` (localhost) or ``8080`` -> (host, port)."""
    host, sep, port = str(text).rpartition(":")
    if not sep:
        host, port = "", text
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not 0 <= number <= 65535:
        raise ConfigError(f"--serve {text!r}: expected HOST:PORT such as 127.0.0.1:8080")
    return (host or "127.0.0.1").strip("[]"), number


class PreviewServer:
    """The preview web server, run on its own event loop thread; also a sink (``write``/``close``).

    ``stats`` is the stream's :class:`~vggedge.apps.stream.stats.StreamStats`
    (for /metrics and /healthz). ``port=0`` picks a free port (see :attr:`port`).
    """

    def __init__(self, uris: list[str], stats: Any, host: str = "127.0.0.1", port: int = 8080,
                 jpeg_quality: int = 80) -> None:
        try:
            import aiohttp  # noqa: F401
            import prometheus_client  # noqa: F401
        except ImportError as exc:
            raise BackendUnavailable(f"--serve needs aiohttp and prometheus-client ({exc.name} is missing); "
                                     "pip install 'vggedge[stream]'") from None
        self.uris, self.stats, self.host, self.port = [redact_uri(u) for u in uris], stats, host, port
        self.quality = jpeg_quality
        self._jpeg: dict[int, bytes] = {}
        self._state: dict[int, dict[str, Any]] = {}
        self._version = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Condition | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._runner = None

    # sink interface (called from the output thread) --------------------------
    def write(self, result: Any) -> None:
        """Publish one result: its annotated JPEG and its top-5."""
        import cv2

        ok, data = cv2.imencode(".jpg", annotate(result.image, result), [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            return
        if self._thread is not None and not self._thread.is_alive():  # its event loop ended: nobody is served
            raise ConnectionAbortedError(errno.ECONNABORTED, "the preview server stopped serving")
        state = {"source": result.source, "uri": redact_uri(result.uri), "frame": result.frame,
                 "top_k": [{"index": p.index, "label": p.label, "score": float(p.score)} for p in result.top_k[:5]],
                 "fps": float(result.fps), "latency_ms": result.latency_s * 1000.0, "timestamp": result.timestamp}
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._publish, result.source, data.tobytes(), state)

    def close(self) -> None:
        """Stop the server and its thread (safe twice)."""
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=10)
            self._thread.join(timeout=10)
        self._loop = None

    # lifecycle -----------------------------------------------------------------
    def start(self) -> "PreviewServer":
        """Start serving; raises VggEdgeError when the address cannot be bound."""
        self._thread = threading.Thread(target=self._serve, name="stream-preview", daemon=True)
        self._thread.start()
        self._ready.wait(timeout=15)
        if self._error is not None:
            raise VggEdgeError(f"preview server cannot listen on {self.host}:{self.port}: {self._error}")
        log.info("preview at %s", self.url)
        return self

    def __enter__(self) -> "PreviewServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    @property
    def uri(self) -> str:
        """The sink's name in messages."""
        return f"http://{self.host}:{self.port}"

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._startup())
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._loop = loop
        self._ready.set()
        loop.run_forever()
        loop.close()

    async def _startup(self) -> None:
        from aiohttp import web

        async def host_guard(request, handler):
            return await self._host_guard_impl(request, handler)

        self._host_guard = web.middleware(host_guard)
        self._changed = asyncio.Condition()
        app = web.Application(middlewares=[self._host_guard])
        app.add_routes([web.get("/", self._page), web.get("/video/{id}.mjpg", self._video),
                        web.get("/events", self._events), web.get("/api/state", self._api_state),
                        web.get("/metrics", self._metrics), web.get("/healthz", self._healthz)])
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            self.port = site._server.sockets[0].getsockname()[1]  # the port the OS chose

    async def _shutdown(self) -> None:
        self._version = -1  # tells open streams to end
        async with self._changed:
            self._changed.notify_all()
        await self._runner.cleanup()
        asyncio.get_running_loop().call_soon(asyncio.get_running_loop().stop)

    def _publish(self, source: int, jpeg: bytes, state: dict[str, Any]) -> None:
        self._jpeg[source], self._state[source] = jpeg, state
        self._version += 1

        async def notify() -> None:
            async with self._changed:
                self._changed.notify_all()
        asyncio.ensure_future(notify())

    async def _next_change(self, seen: int) -> int:
        async with self._changed:
            await self._changed.wait_for(lambda: self._version != seen)
        return self._version

    def allowed_hosts(self) -> set[str] | None:
        """The ``Host`` headers accepted: the bound address and, on loopback, ``localhost`` (DNS-rebinding guard).

        None (any) when bound to all interfaces, where the user chose to serve every name.
        """
        if self.host in ("", "0.0.0.0", "::"):
            return None
        names = {self.host.lower()}
        if self.host in ("127.0.0.1", "::1", "localhost"):
            names |= {"localhost", "127.0.0.1", "::1"}
        allowed = set()
        for name in names:
            shown = f"[{name}]" if ":" in name else name
            allowed |= {shown, f"{shown}:{self.port}"}
        return allowed

    async def _host_guard_impl(self, request, handler):
        from aiohttp import web

        allowed = self.allowed_hosts()
        host = (request.headers.get("Host") or "").lower()
        if allowed is not None and host not in allowed:
            return web.Response(status=403, text=f"Host {host[:100]!r} is not this server's address "
                                                 f"({self.host}:{self.port}); refused (DNS-rebinding guard)\n")
        return await handler(request)

    # handlers --------------------------------------------------------------------
    async def _page(self, request):
        from aiohttp import web
        from html import escape

        blocks = "\n".join(SOURCE_BLOCK % {"i": i, "uri": escape(uri)} for i, uri in enumerate(self.uris))
        return web.Response(text=PAGE % {"sources": blocks}, content_type="text/html")

    async def _video(self, request):
        from aiohttp import web

        text = request.match_info["id"]
        source = int(text) if text.isascii() and text.isdigit() and len(text) < 8 else -1
        if not 0 <= source < len(self.uris):
            raise web.HTTPNotFound(text=f"no source {request.match_info['id']}; sources are 0..{len(self.uris) - 1}")
        response = web.StreamResponse(headers={"Content-Type": "multipart/x-mixed-replace; boundary=frame",
                                               "Cache-Control": "no-cache"})
        await response.prepare(request)
        return await self._pump(response, lambda: self._part(source))

    def _part(self, source: int) -> bytes | None:
        jpeg = self._jpeg.get(source)
        if jpeg is None:
            return None
        return (b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: " + str(len(jpeg)).encode()
                + b"\r\n\r\n" + jpeg + b"\r\n")

    async def _events(self, request):
        from aiohttp import web

        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        return await self._pump(response, lambda: f"data: {json.dumps(self._snapshot())}\n\n".encode())

    async def _pump(self, response, payload: Callable[[], bytes | None]):
        """Write ``payload()`` now and after every change until the client leaves or the server stops."""
        try:
            while self._version >= 0:
                data = payload()
                if data is not None:
                    await response.write(data)
                await self._next_change(self._version)  # the loop is one thread: no change is missed
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return response

    def _snapshot(self) -> dict[str, Any]:
        return {"sources": [self._state[i] for i in sorted(self._state)]}

    async def _api_state(self, request):
        from aiohttp import web

        return web.json_response(self._snapshot())

    async def _metrics(self, request):
        from aiohttp import web

        from .metrics import metrics_text

        body, content_type = metrics_text(self.stats)
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def _healthz(self, request):
        from aiohttp import web

        summary = self.stats.summary()
        down = [redact_uri(s["uri"]) for s in summary["sources"] if not s["connected"]]
        body = {"status": "degraded" if down else "ok", "disconnected": down,
                "classified": summary["classified"], "sources": len(summary["sources"])}
        return web.json_response(body, status=503 if down else 200)
