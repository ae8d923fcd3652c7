"""Keep a thread's alternate signal stack across OpenVINO calls that swap it.

OpenVINO's CPU plugin installs a signal stack of its own on the calling thread when it
compiles a model, and puts back the one it saved when that model is destroyed. Models
destroyed out of creation order (two runners dropped first-in first-out, a compiled
model kept alive by a traceback) leave the thread pointing at a stack already unmapped,
and the next signal delivered there (Ctrl-C, SIGTERM) kills the process with SIGSEGV.
Seen with OpenVINO 2026.4 on the CPU plugin. :func:`kept_signal_stack` around compiling
and releasing keeps the thread's own stack in place, so whatever OpenVINO saved and
restores later is a stack that stays mapped.
"""
from __future__ import annotations

import ctypes
import sys
from contextlib import contextmanager
from typing import Iterator


class _StackT(ctypes.Structure):  # struct stack_t (Linux): ss_sp, ss_flags, ss_size
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.sigaltstack.argtypes = [ctypes.POINTER(_StackT), ctypes.POINTER(_StackT)]
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _libc()


def current() -> tuple[int | None, int, int] | None:
    """This thread's alternate signal stack as (address, flags, size); None where it cannot be read."""
    if _LIBC is None:
        return None
    stack = _StackT()
    if _LIBC.sigaltstack(None, ctypes.byref(stack)) != 0:
        return None
    return stack.ss_sp, stack.ss_flags, stack.ss_size


@contextmanager
def kept_signal_stack() -> Iterator[None]:
    """Run the block, then put this thread's alternate signal stack back as it was before it (Linux; a no-op
    elsewhere)."""
    before = _StackT()
    saved = _LIBC is not None and _LIBC.sigaltstack(None, ctypes.byref(before)) == 0
    try:
        yield
    finally:
        if saved and current() != (before.ss_sp, before.ss_flags, before.ss_size):
            before.ss_flags &= ~1  # SS_ONSTACK is reported, never set
            _LIBC.sigaltstack(ctypes.byref(before), None)


__all__ = ["current", "kept_signal_stack"]
