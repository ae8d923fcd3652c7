"""Reading remote inputs with bounds: a byte cap, connect/read timeouts and a deadline for the whole body.

``http(s)://`` is read with the standard library (a socket timeout bounds every
connect and read; the body is streamed in chunks and refused as soon as it passes
the cap, or when it does not arrive within :data:`DEADLINE_FACTOR` read timeouts,
so a server trickling one byte a second cannot hold a job). Other schemes go
through fsspec with the same cap.
"""
from __future__ import annotations

import base64
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from ...errors import ConfigError

DEADLINE_FACTOR = 4  #: a whole body must arrive within this many read timeouts
#: set when a job stops (Ctrl-C, SIGTERM, an error): reads in flight end at their next chunk
STOP = threading.Event()
_CHUNK = 1 << 16


class RemoteError(Exception):
    """A remote read failed; ``kind`` is ``too-large`` or ``unreadable``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def is_http(url: str) -> bool:
    return url.lower().startswith(("http://", "https://"))


def read_url(url: str, max_bytes: int, timeout: float) -> bytes:
    """The body of ``url``, at most ``max_bytes`` bytes, within the timeouts; RemoteError otherwise."""
    if not is_http(url):
        return _read_fsspec(url, max_bytes)
    request = _request(url)
    deadline = time.monotonic() + DEADLINE_FACTOR * timeout
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > max_bytes:
                raise RemoteError("too-large", f"body is {int(length)} bytes (Content-Length); the limit is "
                                               f"{max_bytes} (--max-bytes)")
            chunks, size = [], 0
            while True:
                chunk = response.read1(_CHUNK) if hasattr(response, "read1") else response.read(_CHUNK)
                if not chunk:
                    break
                size += len(chunk)
                if size > max_bytes:
                    raise RemoteError("too-large", f"body is over {max_bytes} bytes (--max-bytes)")
                chunks.append(chunk)
                if STOP.is_set():
                    raise RemoteError("unreadable", "the job stopped while this was read")
                if time.monotonic() > deadline:
                    raise RemoteError("unreadable", f"body not complete after {DEADLINE_FACTOR * timeout:g} s "
                                                    f"({size} bytes; --read-timeout {timeout:g})")
            return b"".join(chunks)
    except RemoteError:
        raise
    except urllib.error.HTTPError as exc:
        raise RemoteError("unreadable", f"HTTP {exc.code} {exc.reason}") from None
    except TimeoutError:
        raise RemoteError("unreadable", f"no data for {timeout:g} s (--read-timeout)") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            raise RemoteError("unreadable", f"no connection within {timeout:g} s (--read-timeout)") from None
        raise RemoteError("unreadable", f"cannot read ({reason})") from None
    except (OSError, ValueError) as exc:
        raise RemoteError("unreadable", f"cannot read ({exc})") from None


def _request(url: str) -> urllib.request.Request:
    """A request for ``url``; credentials in it (``user:pass@host``) become a Basic authorization header."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None:
        return urllib.request.Request(url)
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    bare = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    token = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
    return urllib.request.Request(bare, headers={"Authorization": "Basic " + base64.b64encode(token.encode()).decode()})


def fsspec_module():
    """fsspec, or a ConfigError saying how to install it."""
    try:
        import fsspec
    except ImportError:
        raise ConfigError("remote inputs (scheme://...) are read through fsspec, which is not installed: "
                          "pip install fsspec (plus s3fs, gcsfs, ... for your object store)") from None
    return fsspec


def _read_fsspec(url: str, max_bytes: int) -> bytes:
    try:
        with fsspec_module().open(url, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except (OSError, ValueError) as exc:
        raise RemoteError("unreadable", f"cannot read ({exc})") from None
    if len(data) > max_bytes:
        raise RemoteError("too-large", f"file is over {max_bytes} bytes (--max-bytes)")
    return data
