"""Where stream results go: JSON lines, an annotated video file, the live preview.

A sink has ``write(result)``, ``close()`` and a ``uri`` naming it; :class:`OutputWorker`
feeds every sink from its own thread so writing never holds up capture or inference.
A sink whose write fails stops the stream with :class:`~vggedge.errors.OutputError`
naming it (credentials redacted) and the OS error; a closed pipe (EPIPE, ``| head``)
is :class:`~vggedge.errors.OutputClosed`, the quiet end of a stream whose reader left.
Results are :class:`vggedge.apps.stream.StreamResult` objects (``source``,
``frame``, ``timestamp``, ``top_k``, ``latency_s``, ``image``, ``fps``).
"""
from __future__ import annotations

import errno
import json
import logging
import queue
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Protocol, Sequence


from ..errors import ConfigError, OutputClosed, OutputError, VggEdgeError
from ..redact import redact_uri
from .annotate import annotate

log = logging.getLogger(__name__)


class Sink(Protocol):
    uri: str

    def write(self, result: Any) -> None: ...

    def close(self) -> None: ...


class JsonLinesSink:
    """One JSON object per classified frame, to stdout (``-``) or a file."""

    def __init__(self, target: str | Path | IO[str] = "-") -> None:
        self.uri = "stdout" if target == "-" else f"json://{target}" if isinstance(target, (str, Path)) \
            else f"json lines to {type(target).__name__}"
        if target == "-":
            self._file, self._own = sys.stdout, False
        elif isinstance(target, (str, Path)):
            try:
                self._file, self._own = open(target, "w", encoding="utf-8"), True
            except OSError as exc:
                raise ConfigError(f"--json {target}: cannot write it ({exc.strerror or exc}); expected a file "
                                  "in an existing, writable folder, or '-' for stdout") from None
        else:
            self._file, self._own = target, False

    def write(self, result: Any) -> None:
        self._file.write(json.dumps(result.to_dict()) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._own and not self._file.closed:
            self._file.close()


class VideoFileSink:
    """Annotated frames to a video file per source (``out.mp4``; several sources: ``out-0.mp4``, ``out-1.mp4``).

    The file is finalised by :meth:`close` (also on Ctrl-C/SIGTERM), so it plays.
    ``fps`` is the rate written into the file (default: the source's, else 30).
    """

    CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "mp4v"}

    def __init__(self, path: str | Path, sources: int = 1,
                 fps: Sequence[float | None] | Callable[[int], float | None] | None = None) -> None:
        self.path = Path(path)
        self.uri = f"file://{self.path}"
        self.sources = sources
        self.check(path, sources)  # before any work: a video that cannot be written is an error, not a log line
        self.fps = fps if callable(fps) else list(fps or [None] * sources)
        self._writers: dict[int, Any] = {}
        self.frames: dict[int, int] = {}

    @classmethod
    def check(cls, path: str | Path, sources: int = 1) -> None:
        """Refuse a video path that cannot be written (type, folder, permissions), for every source's file."""
        path = Path(path)
        if path.suffix.lower() not in cls.CODECS:
            raise ConfigError(f"--output {path}: unsupported video type; use one of {sorted(cls.CODECS)}")
        if not path.parent.exists():
            raise ConfigError(f"--output {path}: folder {path.parent} does not exist")
        for i in range(sources):
            _check_writable(cls._numbered(path, sources, i))

    def path_for(self, source: int) -> Path:
        """The file one source is written to."""
        return self._numbered(self.path, self.sources, source)

    @staticmethod
    def _numbered(path: Path, sources: int, source: int) -> Path:
        return path if sources == 1 else path.with_name(f"{path.stem}-{source}{path.suffix}")

    def _fps(self, source: int) -> float | None:
        if callable(self.fps):
            return self.fps(source)
        return self.fps[source] if source < len(self.fps) else None

    def write(self, result: Any) -> None:
        import cv2

        frame = annotate(result.image, result)
        writer = self._writers.get(result.source)
        if writer is None:
            path = self.path_for(result.source)
            fps = self._fps(result.source) or 30.0
            fourcc = cv2.VideoWriter_fourcc(*self.CODECS[self.path.suffix.lower()])
            writer = cv2.VideoWriter(str(path), fourcc, float(fps), (frame.shape[1], frame.shape[0]))
            if not writer.isOpened():
                raise VggEdgeError(f"OpenCV cannot open {path.name} for writing")
            self._writers[result.source], self.frames[result.source] = writer, 0
            self._size = frame.shape[:2]
        if frame.shape[:2] != self._size:
            frame = cv2.resize(frame, (self._size[1], self._size[0]))
        writer.write(frame)
        self.frames[result.source] += 1

    def close(self) -> None:
        for writer in self._writers.values():
            writer.release()
        self._writers.clear()


def _check_writable(path: Path) -> None:
    """Raise ConfigError unless ``path`` can be created or replaced (created and removed again if new)."""
    if path.is_dir():
        raise ConfigError(f"--output {path} is a folder; expected a video file name such as out.mp4")
    existed = path.exists()
    try:
        with open(path, "ab"):
            pass
    except OSError as exc:
        raise ConfigError(f"--output {path}: cannot write it ({exc.strerror or exc})") from None
    if not existed:
        path.unlink(missing_ok=True)


class CallbackSink:
    """Calls a function with each result (handy in tests and user code)."""

    def __init__(self, fn: Callable[[Any], None]) -> None:
        self.fn = fn
        self.uri = f"callback {getattr(fn, '__name__', type(fn).__name__)}"

    def write(self, result: Any) -> None:
        self.fn(result)

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class SinkContext:
    """What a sink needs to know of its stream: the source URIs, each source's frame rate, its statistics."""

    uris: Sequence[str] = ("0",)
    fps: Callable[[int], float | None] | None = None
    stats: Any = None  # the stream's StreamStats (the preview serves them at /metrics and /healthz)


SINK_SCHEMES = ("-", "json://FILE", "FILE.jsonl", "file://VIDEO", "VIDEO.mp4/.avi/.mkv/.mov/.m4v",
                "http://HOST:PORT")


def _route(uri: str | Path) -> tuple[str, str]:
    """(kind, target) of a sink URI: ``json`` (a file or ``-``), ``video`` (a file), ``http`` (HOST:PORT)."""
    text = str(uri)
    scheme, sep, rest = text.partition("://")
    scheme = scheme.lower() if sep else ""
    suffix = Path(rest if sep else text).suffix.lower()
    if text == "-" or scheme == "json" or (not sep and suffix in (".json", ".jsonl")):
        return "json", rest if scheme == "json" else text
    if scheme == "file" or (not sep and suffix in VideoFileSink.CODECS):
        return "video", rest if scheme == "file" else text
    if scheme == "http":
        return "http", rest.rstrip("/")
    raise ConfigError(f"output {text!r}: no sink for this URI; expected one of {', '.join(SINK_SCHEMES)}")


def check_sink(uri: str | Path, sources: int = 1) -> None:
    """Refuse a sink URI that cannot work (unknown scheme, a file that cannot be written, a bad address)
    before any work, without opening it: the CLI checks every output before the model loads."""
    kind, target = _route(uri)
    if kind == "json" and target != "-":
        path = Path(target)
        if path.is_dir() or not path.parent.is_dir():
            raise ConfigError(f"--json {target}: expected a file in an existing folder, or '-' for stdout")
        try:
            _check_writable(path)
        except ConfigError as exc:
            raise ConfigError(str(exc).replace("--output", "--json", 1)) from None
    elif kind == "video":
        VideoFileSink.check(target, sources)
    elif kind == "http":
        from .server import parse_address

        parse_address(target)


def open_sink(uri: str | Path, context: SinkContext | None = None) -> Sink:
    """The sink a URI names (jetson-utils' ``videoOutput::Create``): one switch, logged, decided once.

    ``-`` / ``json://-``: JSON lines on stdout; ``json://FILE`` or ``*.json``/``*.jsonl``: JSON lines to a
    file; ``file://VIDEO`` or a video file name: annotated video; ``http://HOST:PORT``: the live preview.
    """
    context = context or SinkContext()
    kind, target = _route(uri)
    if kind == "json":
        sink: Sink = JsonLinesSink(target)
    elif kind == "video":
        sink = VideoFileSink(target, len(context.uris), context.fps)
    else:
        from .server import PreviewServer, parse_address

        host, port = parse_address(target)
        sink = PreviewServer(list(context.uris), context.stats, host, port).start()
    log.info("output %s: %s", uri, type(sink).__name__)
    return sink


def sink_name(sink: Any) -> str:
    """How a sink is shown in messages: its URI with credentials redacted (else its type)."""
    return redact_uri(getattr(sink, "uri", None) or type(sink).__name__)


def output_failure(name: str, exc: BaseException) -> OutputError:
    """What a failed write to the output ``name`` means: OutputClosed when its reader went away (EPIPE),
    else OutputError naming the output and the OS error."""
    shown = redact_uri(name)
    if isinstance(exc, OutputError):
        return exc
    if isinstance(exc, BrokenPipeError) or getattr(exc, "errno", None) == errno.EPIPE:
        return OutputClosed(f"output {shown}: its reader closed it", shown)
    if isinstance(exc, OSError) and exc.errno:
        why = f"{exc.strerror or exc}, {errno.errorcode.get(exc.errno, exc.errno)}"
    else:
        why = redact_uri(exc) or type(exc).__name__
    return OutputError(f"output {shown}: cannot write ({why}); the stream was stopped", shown)


class OutputWorker:
    """Feeds results to every sink from one thread through a bounded queue; closes the sinks on stop.

    ``record(seconds)`` receives the time each result took to write. The first sink
    that fails ends the output: :attr:`failure` holds the :class:`OutputError` (an
    :class:`OutputClosed` for a closed pipe), ``on_failure`` is called with it (the
    stream stops), later results are dropped, and :meth:`put` raises it.
    """

    def __init__(self, sinks: Sequence[Sink], record: Callable[[float], None] | None = None,
                 depth: int = 64, on_failure: Callable[[OutputError], None] | None = None) -> None:
        self.sinks = list(sinks)
        self.failure: OutputError | None = None
        self._record = record
        self._on_failure = on_failure
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._thread = threading.Thread(target=self._loop, name="stream-output", daemon=True)
        self._closed = False

    def __enter__(self) -> "OutputWorker":
        if self.sinks:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def put(self, result: Any) -> None:
        """Queue ``result`` for every sink; raises the output's failure once one has failed."""
        if self.failure is not None:
            raise self.failure
        if self.sinks:
            self._queue.put(result)

    def close(self) -> None:
        """Write what is queued, stop the thread and close every sink (safe twice). A sink that fails to
        close is recorded in :attr:`failure` (when none failed before); the others are still closed."""
        if self._closed:
            return
        self._closed = True
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=30.0)
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:  # one sink failing to close must not keep the others open
                self._fail(sink, exc)

    def _fail(self, sink: Any, exc: BaseException) -> None:
        failure = output_failure(sink_name(sink), exc)
        log.debug("%s", failure)
        if self.failure is None:
            self.failure = failure
            if self._on_failure is not None:
                self._on_failure(failure)

    def _loop(self) -> None:
        while True:
            result = self._queue.get()
            if result is None:
                return
            if self.failure is not None:
                continue  # the output has ended: what is still queued is dropped
            t0 = time.perf_counter()
            for sink in self.sinks:
                try:
                    sink.write(result)
                except Exception as exc:
                    self._fail(sink, exc)
                    break
            if self._record is not None:
                self._record(time.perf_counter() - t0)
