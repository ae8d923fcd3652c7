"""Helpers of the faults suite: the CLI in a subprocess, and file-tree checks.

Every fault test drives ``vggedge`` as a user would (a child process, real files)
and asserts three things: the message, the exit status, and the files left behind.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

REPO = Path(__file__).resolve().parents[2]
CALIB = REPO / "calib"
CLI = [sys.executable, "-c", "from vggedge.cli import run; run()"]
#: The smallest model the CLI exports: convolutional VGG16 at 32x32 with average pooling (59 MB).
SMALL = ["--weights", "random:0", "--input-shape", "32,32,3", "--no-include-top", "--pooling", "avg"]
SIDECAR_MAX = 64 * 1024  # a sidecar or a cache entry is a few KB; any partial artefact is megabytes


@dataclass
class Result:
    """A finished CLI run."""

    returncode: int
    stdout: str
    stderr: str


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # so Python installs its KeyboardInterrupt handler


def _limited(address_space: int | None):
    def setup() -> None:
        _default_sigint()
        if address_space:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
    return setup


def start(args: Sequence[str], address_space: int | None = None, **kwargs) -> subprocess.Popen:
    """Start ``vggedge ARGS`` with SIGINT at its default (pytest may run with it ignored), optionally under a
    hard address-space limit (``RLIMIT_AS``, bytes)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **kwargs}
    return subprocess.Popen([*CLI, *map(str, args)], text=True, preexec_fn=_limited(address_space), env=env,
                            cwd=pipes.pop("cwd", REPO), **pipes)


def vggedge(*args, timeout: float = 300, address_space: int | None = None) -> Result:
    """Run ``vggedge ARGS`` to the end (killed and reported after ``timeout`` seconds)."""
    proc = start(args, address_space)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"vggedge {' '.join(map(str, args))} still running after {timeout} s; stderr: {err}")
    return Result(proc.returncode, out, err)


def interrupt_after(proc: subprocess.Popen, ready: str, delay: float, timeout: float = 300,
                    sig: int = signal.SIGINT) -> Result:
    """Wait until stderr shows ``ready`` (the work has begun), then ``delay`` seconds, then ``sig`` (Ctrl-C's SIGINT)."""
    lines = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if ready in line:
            break
    time.sleep(delay)
    if proc.poll() is None:
        proc.send_signal(sig)
    out, err = proc.communicate(timeout=timeout)
    return Result(proc.returncode, out, "".join(lines) + err)


def tree(folder: Path) -> dict[str, int]:
    """Every file below ``folder`` (hidden ones included) -> its size."""
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}


def strays(folder: Path, allowed: Sequence[str] = ()) -> list[str]:
    """Files that look like partial work or litter: temporaries, onnxruntime intermediates, lock files, big files
    not allowed."""
    found = []
    for name, size in tree(folder).items():
        base = Path(name).name
        if name in allowed:
            continue
        if base.endswith(".tmp") or "-inferred" in base or "augmented" in base or ".tmp" in name \
                or base.endswith(".lock") or size > SIDECAR_MAX:  # locks live in the cache, not here
            found.append(f"{name} ({size} bytes)")
    return found


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def decode_workers(proc: subprocess.Popen, timeout: float = 60) -> set[int]:
    """The job's decode worker processes: children with its own command line, still there a second later (a
    library's fork+exec helper shares it only until it execs)."""
    def forked() -> set[int]:
        found = set()
        for task in Path(f"/proc/{proc.pid}/task").iterdir():
            try:
                found |= {int(c) for c in (task / "children").read_text().split()}
            except OSError:  # that thread ended meanwhile
                continue
        return {pid for pid in found if _cmdline(pid) == _cmdline(proc.pid)}

    workers: set[int] = set()
    deadline = time.monotonic() + timeout
    while not workers and time.monotonic() < deadline and proc.poll() is None:
        seen = forked()
        time.sleep(1.0)  # the worker sits in the slow read meanwhile
        workers = seen & forked()
    assert workers, "no worker process started"
    return workers


def exited(pid: int) -> bool:
    """True once process ``pid`` has ended (a zombie waiting for a reaper that is not there has ended too)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
