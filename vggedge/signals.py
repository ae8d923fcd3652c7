"""One clean stop for Ctrl-C and ``kill``: SIGTERM raised as KeyboardInterrupt.

Python already turns SIGINT (Ctrl-C) into :class:`KeyboardInterrupt`, which unwinds every
``with``/``finally`` block: temporaries are removed, writers flush, runners and servers close.
SIGTERM (``kill``, ``systemctl stop``, ``docker stop``) would instead end the process at once,
skipping all of that. Inside :func:`sigterm_as_interrupt` it raises the same KeyboardInterrupt.

>>> with sigterm_as_interrupt():                                   # doctest: +SKIP
...     long_job()          # SIGTERM or Ctrl-C: KeyboardInterrupt, cleanup runs, previous handler restored
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Iterator


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Inside the block, SIGTERM raises KeyboardInterrupt in the main thread, as Ctrl-C does.

    The previous SIGTERM handler is restored on exit (nesting is fine). Signal handlers
    belong to the main thread: elsewhere (a worker thread, a Ray actor's thread) this is a
    no-op. SIGINT is left as it is: Python's own handler already raises KeyboardInterrupt,
    and a process started with SIGINT ignored (``nohup``, a background job) keeps ignoring it.
    Usable as a decorator too: ``@sigterm_as_interrupt()``.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:  # None: a handler installed outside Python, which cannot be put back; the default ends the process
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
