"""vggedge.atomic: checked targets, temporary names renamed into place, locks, private folders."""
from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from vggedge.atomic import TargetError, artefact_lock, atomic_target, check_target, lock_path, private_workdir


def test_complete_write_renamed_into_place(tmp_path: Path) -> None:
    dst = tmp_path / "a.onnx"
    with atomic_target(dst) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".a.onnx.") and tmp.name.endswith(".tmp")
        tmp.write_bytes(b"x" * 10)
        assert not dst.exists()
    assert dst.read_bytes() == b"x" * 10 and [p.name for p in tmp_path.iterdir()] == ["a.onnx"]


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_failed_or_interrupted_write_leaves_nothing(tmp_path: Path, error: type) -> None:
    dst = tmp_path / "a.onnx"
    dst.write_bytes(b"old")
    with pytest.raises(error):
        with atomic_target(dst) as tmp:
            tmp.write_bytes(b"partial")
            raise error()
    assert dst.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["a.onnx"]


def test_check_target_messages(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match=r": is a directory; expected the path of the ONNX model"):
        check_target(tmp_path, "ONNX model")
    (tmp_path / "f").write_text("x")
    with pytest.raises(TargetError, match=r"f/sub/m.onnx: .*f is a file, not a folder"):
        check_target(tmp_path / "f" / "sub" / "m.onnx")
    assert check_target(tmp_path / "new" / "m.onnx") == tmp_path / "new" / "m.onnx"
    assert (tmp_path / "new").is_dir() and list((tmp_path / "new").iterdir()) == []


def test_private_workdir_removed_on_interrupt(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        with private_workdir(tmp_path) as work:
            (work / "m-inferred.onnx").write_bytes(b"big")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_lock_serialises(tmp_path: Path) -> None:
    dst, order = tmp_path / "a.onnx", []

    def hold() -> None:
        with artefact_lock(dst):
            order.append("first in")
            time.sleep(0.3)
            order.append("first out")

    thread = threading.Thread(target=hold)
    thread.start()
    while not order:
        time.sleep(0.01)
    with artefact_lock(dst):
        order.append("second in")
    thread.join()
    assert order == ["first in", "first out", "second in"]


def test_locks_live_in_the_cache_not_beside_the_artefact(tmp_path: Path, monkeypatch) -> None:
    cache, models = tmp_path / "cache", tmp_path / "models"
    models.mkdir()
    monkeypatch.setenv("VGGEDGE_CACHE", str(cache))
    dst = models / "vgg16.int8.onnx"
    with artefact_lock(dst):
        with atomic_target(dst) as tmp:
            tmp.write_bytes(b"model")
    assert sorted(p.name for p in models.iterdir()) == ["vgg16.int8.onnx"]  # nothing else left in the folder
    [lock] = (cache / "locks").iterdir()
    assert lock == lock_path(dst) and lock.name.startswith("vgg16.int8.onnx-")
    (tmp_path / "link").symlink_to(models)
    assert lock_path(tmp_path / "link" / "vgg16.int8.onnx") == lock  # the same artefact, the same lock
    assert lock_path(models / "vgg16.fp16.onnx") != lock


def test_lock_in_the_cache_excludes_another_process(tmp_path: Path, monkeypatch) -> None:
    """A second process waits on the first's lock (filelock's fcntl lock, not a thread-local one)."""
    monkeypatch.setenv("VGGEDGE_CACHE", str(tmp_path / "cache"))
    dst = tmp_path / "a.onnx"
    child = ("import sys, time; from vggedge.atomic import artefact_lock\n"
             "with artefact_lock(sys.argv[1], timeout=0.2): print('got it')\n")
    with artefact_lock(dst):
        held = subprocess.run([sys.executable, "-c", child, str(dst)], capture_output=True, text=True)
    assert held.returncode != 0 and "another process has been building it" in held.stderr
    free = subprocess.run([sys.executable, "-c", child, str(dst)], capture_output=True, text=True)
    assert free.returncode == 0 and free.stdout.strip() == "got it"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".lock")] == []


def test_unwritable_cache_falls_back_to_a_lock_beside_the_artefact(tmp_path: Path, monkeypatch) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("VGGEDGE_CACHE", str(blocker / "cache"))  # below a file: cannot be created
    dst = tmp_path / "m" / "a.onnx"
    dst.parent.mkdir()
    with artefact_lock(dst):
        assert (dst.parent / ".a.onnx.lock").exists()
