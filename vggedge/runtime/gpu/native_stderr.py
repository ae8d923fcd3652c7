"""What a native library writes straight to file descriptor 2 during one call, caught and sorted line by line.

Some GPU libraries print from C/C++ whatever their own log level says: nvImageCodec
0.9 writes "Failed to load nvjpeg2k library! ..." and "Failed to load nvtiff
library! ..." to stderr on every import unless those optional decoders are
installed, even with ``PYNVIMGCODEC_VERBOSITY=0``, and "dlopen libcuda.so failed!"
when a decoder cannot start. :func:`caught_stderr` catches what is written while a
call runs and offers each line (colour codes removed) to ``claim``: a line it claims
(returns True; it logged it, say) is gone; any other line goes back to stderr as it
was written, or, when the call raised, to the caller for its error message.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
from typing import Callable, Iterator

_LOCK = threading.Lock()  # one redirection of fd 2 at a time in this process
_COLOUR = re.compile(r"\x1b\[[0-9;]*m")


@contextlib.contextmanager
def caught_stderr(claim: Callable[[str], bool]) -> Iterator[list[str]]:
    """Catch fd 2 while the block runs; yields the list that receives the unclaimed lines (as plain text).

    Unclaimed lines are also written back to stderr, unchanged, unless the block
    raised. Whatever another thread writes meanwhile is caught too and, unclaimed,
    comes back a moment late: use it around short native calls, not a whole job.
    """
    unclaimed: list[str] = []
    fd = 2  # where native code writes, whatever sys.stderr is now
    with _LOCK:
        _flush()
        try:
            saved = os.dup(fd)
        except OSError:  # no fd 2 at all (a daemon): nothing to catch
            yield unclaimed
            return
        failed = False
        with tempfile.TemporaryFile() as caught:
            os.dup2(caught.fileno(), fd)
            try:
                yield unclaimed
            except BaseException:
                failed = True
                raise
            finally:  # also when the call raised: what it printed on the way is part of the story
                _flush()
                os.dup2(saved, fd)
                os.close(saved)
                caught.seek(0)
                back = []
                for raw in caught.read().splitlines(keepends=True):
                    line = _COLOUR.sub("", raw.decode("utf-8", "replace")).strip()
                    if line and claim(line):
                        continue
                    if line:
                        unclaimed.append(line)
                    if not failed:
                        back.append(raw)
                if back:
                    os.write(fd, b"".join(back))


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


__all__ = ["caught_stderr"]
