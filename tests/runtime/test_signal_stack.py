"""kept_signal_stack: whatever a library installs as the thread's signal stack inside the block is undone."""
from __future__ import annotations

import ctypes
import sys

import pytest

from vggedge.runtime.cpu import signal_stack

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sigaltstack as Linux defines it")


def test_a_stack_installed_inside_the_block_is_replaced_by_the_one_before() -> None:
    before = signal_stack.current()
    assert before is not None
    foreign = ctypes.create_string_buffer(64 * 1024)  # what OpenVINO's plugin does when it compiles a model
    with signal_stack.kept_signal_stack():
        stack = signal_stack._StackT(ctypes.addressof(foreign), 0, len(foreign))
        assert signal_stack._LIBC.sigaltstack(ctypes.byref(stack), None) == 0
        assert signal_stack.current() == (ctypes.addressof(foreign), 0, len(foreign))
    assert signal_stack.current() == before
    with signal_stack.kept_signal_stack():  # nothing changed inside: nothing is touched
        pass
    assert signal_stack.current() == before
