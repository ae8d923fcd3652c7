"""The one TensorRT logger of the process, and per-operation slices of what it said.

TensorRT keeps a single logger pointer per process: the logger given to the
first ``Builder``/``Runtime`` is the one it calls, a second one is ignored, and a
logger freed while TensorRT still holds its pointer can be called after it is
gone (a known segfault on TensorRT 8.6 / Orin). So vggedge makes exactly one
logger per process, never frees it, and gives each operation (a build, a load)
an :class:`OperationLog`: the messages logged since that operation began, and an
``echo`` that sees them while it runs.
"""
from __future__ import annotations

import itertools
import logging
import threading
from collections import deque
from typing import Any, Callable, Optional

_log = logging.getLogger("vggedge.engine")
LogFn = Callable[[str], None]
KEPT = ("INTERNAL_ERROR", "ERROR", "WARNING")
HISTORY = 2000  # messages kept for slices; older ones drop off
_LOGGERS: dict[int, tuple[Any, Any]] = {}  # id(tensorrt module) -> (module, its logger): never freed
_LOCK = threading.Lock()


def process_logger(trt: Any) -> Any:
    """The process's one ``trt.ILogger`` (made on first use, kept until exit) for this ``tensorrt`` module."""
    with _LOCK:
        entry = _LOGGERS.get(id(trt))
        if entry is None:
            entry = _LOGGERS[id(trt)] = (trt, _make_logger(trt))
        return entry[1]


def _make_logger(trt: Any) -> Any:
    class ProcessLogger(trt.ILogger):  # type: ignore[misc,name-defined]
        """Keeps warnings and errors (numbered) and passes them to the operations in progress."""

        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self._history: deque[tuple[int, str]] = deque(maxlen=HISTORY)
            self._seq = itertools.count()
            self._echoes: dict[int, LogFn] = {}
            self._lock = threading.Lock()

        def log(self, severity: Any, msg: str) -> None:
            name = str(getattr(severity, "name", severity)).rsplit(".", 1)[-1]
            if name not in KEPT:
                if name == "INFO":
                    _log.debug("TensorRT [INFO] %s", msg)
                return
            line = f"[{name}] {msg}"
            with self._lock:
                self._history.append((next(self._seq), line))
                echoes = list(self._echoes.values())
            for echo in echoes or [_log.warning]:
                echo(f"TensorRT {line}")

        def operation(self, echo: Optional[LogFn] = None) -> "OperationLog":
            """Start a slice: the messages from now on (``echo`` sees them until the slice is closed)."""
            with self._lock:
                start = next(self._seq)
                if echo is not None:
                    self._echoes[start] = echo
            return OperationLog(self, start)

        def since(self, start: int) -> list[str]:
            with self._lock:
                return [line for seq, line in self._history if seq > start]

        def stop_echo(self, start: int) -> None:
            with self._lock:
                self._echoes.pop(start, None)

    return ProcessLogger()


class OperationLog:
    """The TensorRT messages logged since one operation began (``.messages``); a context manager."""

    def __init__(self, logger: Any, start: int) -> None:
        self.logger, self._start = logger, start

    @property
    def messages(self) -> list[str]:
        return self.logger.since(self._start)

    def said(self) -> str:
        """The messages as an indented block for error texts."""
        lines = self.messages
        return ("\nTensorRT said:\n" + "\n".join(f"  {m}" for m in lines)) if lines else "\n(TensorRT logged nothing)"

    def close(self) -> None:
        """Stop echoing (the messages stay readable)."""
        self.logger.stop_echo(self._start)

    def __enter__(self) -> "OperationLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
