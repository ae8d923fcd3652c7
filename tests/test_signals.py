"""vggedge.signals: SIGTERM becomes KeyboardInterrupt inside the block, main thread only, handlers restored."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from vggedge.signals import sigterm_as_interrupt

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGTERM") or os.name != "posix", reason="POSIX signals")


@pytest.fixture
def sentinel_handler():
    """A recognisable SIGTERM handler in place for the test, the original put back after."""
    seen: list[int] = []

    def handler(signum, frame):
        seen.append(signum)

    original = signal.signal(signal.SIGTERM, handler)
    yield handler, seen
    signal.signal(signal.SIGTERM, original)


def _sigterm_self() -> None:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(1.0)  # the handler runs at the next bytecode boundary; the sleep is interrupted by it


def test_sigterm_raises_keyboard_interrupt_and_previous_handler_is_restored(sentinel_handler) -> None:
    handler, seen = sentinel_handler
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        with sigterm_as_interrupt():
            _sigterm_self()
    assert signal.getsignal(signal.SIGTERM) is handler
    assert seen == []  # the sentinel was not called inside the block
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.1)
    assert seen == [signal.SIGTERM]  # ...and is the one in force again


def test_nested_blocks_restore_in_order_and_sigint_is_untouched(sentinel_handler) -> None:
    handler, _ = sentinel_handler
    sigint = signal.getsignal(signal.SIGINT)
    with sigterm_as_interrupt():
        outer = signal.getsignal(signal.SIGTERM)
        assert outer is not handler
        with sigterm_as_interrupt():
            assert signal.getsignal(signal.SIGINT) is sigint
        assert signal.getsignal(signal.SIGTERM) is outer
    assert signal.getsignal(signal.SIGTERM) is handler


def test_outside_the_main_thread_it_is_a_no_op(sentinel_handler) -> None:
    handler, _ = sentinel_handler
    inside: list[object] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with sigterm_as_interrupt():
                inside.append(signal.getsignal(signal.SIGTERM))
        except BaseException as exc:  # noqa: BLE001 - a ValueError from signal.signal would land here
            errors.append(exc)

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert errors == [] and inside == [handler]
    assert signal.getsignal(signal.SIGTERM) is handler


def test_decorator_form_installs_per_call(sentinel_handler) -> None:
    handler, _ = sentinel_handler

    @sigterm_as_interrupt()
    def job() -> object:
        return signal.getsignal(signal.SIGTERM)

    assert job() is not handler and job() is not handler  # usable more than once
    assert signal.getsignal(signal.SIGTERM) is handler


CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from vggedge.signals import sigterm_as_interrupt
    marker = Path(sys.argv[1])
    guard = sigterm_as_interrupt() if sys.argv[2] == "guarded" else __import__("contextlib").nullcontext()
    try:
        with guard:
            try:
                print("ready", flush=True)
                time.sleep(60)
            finally:
                marker.write_text("cleaned up")
    except KeyboardInterrupt:
        sys.exit(130)
""")


@pytest.mark.parametrize("mode, code, cleaned", [("guarded", 130, True), ("plain", -signal.SIGTERM, False)])
def test_a_killed_process_runs_its_cleanup_only_inside_the_block(tmp_path: Path, mode: str, code: int,
                                                                 cleaned: bool) -> None:
    marker = tmp_path / "marker"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(marker), mode], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == code
    assert marker.exists() is cleaned
