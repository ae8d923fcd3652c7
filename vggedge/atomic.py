"""Writing artefacts safely: checked targets, temporary names renamed into place, locks, private work folders.

Every artefact and cache entry vggedge writes goes through :func:`atomic_target`,
so a final name only ever holds a complete file, and nothing is left behind when
a step fails or is interrupted (Ctrl-C included). Builds of the same artefact are
serialised with :func:`artefact_lock` (the ``filelock`` package), whose lock files live in
the vggedge cache folder, not beside the user's artefacts.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Iterator

from .errors import VggEdgeError

log = logging.getLogger(__name__)

#: Longest wait for another process building the same artefact (a full INT8 build takes minutes).
LOCK_TIMEOUT_S = 3600.0


class TargetError(VggEdgeError, ValueError):
    """An output path cannot be written: it is a folder, lies below a file, or is not writable."""


def check_target(path: str | Path, what: str = "output file") -> Path:
    """Make sure ``path`` can become a file: refuse folders, paths below files and unwritable folders.

    Creates the missing parent folders. The message names the path and says what was expected.
    """
    path = Path(path)
    if path.is_dir():
        raise TargetError(f"{path}: is a directory; expected the path of the {what} to write "
                          f"(for example {path / 'vgg16.onnx'})")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise TargetError(f"{path}: {parent} is a file, not a folder; expected a path whose parent folders "
                              f"are folders (or can be created) for the {what}")
        if parent.exists():
            break
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TargetError(f"{path}: cannot create its folder {path.parent} ({exc.strerror or exc}); "
                          f"expected a writable location for the {what}") from None
    try:
        probe = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".probe")
    except OSError as exc:
        raise TargetError(f"{path}: folder {path.parent} is not writable ({exc.strerror or exc}); "
                          f"expected a writable location for the {what}") from None
    probe.close()
    return path


def temp_name(dst: Path) -> Path:
    """A fresh hidden temporary name beside ``dst`` (same filesystem, so the final rename is atomic).

    Not created here, so the writer creates it with the usual permissions (umask applies).
    """
    return dst.parent / f".{dst.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"


@contextlib.contextmanager
def atomic_target(dst: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is renamed to ``dst``, on any exit it is removed.

    ``with atomic_target(out) as tmp: onnx.save(model, tmp)`` leaves either the
    complete new file at ``out`` or nothing new at all, even on KeyboardInterrupt.
    """
    dst = Path(dst)
    tmp = temp_name(dst)
    try:
        yield tmp
        os.replace(tmp, dst)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_text_atomic(dst: str | Path, text: str) -> Path:
    """Write a small text file (a sidecar, a cache entry) under a temporary name, then rename it."""
    dst = Path(dst)
    with atomic_target(dst) as tmp:
        tmp.write_text(text)
    return dst


@contextlib.contextmanager
def private_workdir(near: str | Path, prefix: str = "vggedge-") -> Iterator[Path]:
    """A private temporary folder inside ``near`` (same filesystem as the artefact), removed on every exit."""
    folder = Path(tempfile.mkdtemp(dir=near, prefix=f".{prefix}", suffix=".tmp"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def lock_path(dst: str | Path) -> Path:
    """Where the lock on building ``dst`` lives: ``<vggedge cache>/locks/``, never beside the artefact.

    Keyed by the artefact's resolved absolute path (a symlinked folder gives the same lock),
    so every process with the same cache folder (``VGGEDGE_CACHE``) serialises on it. Lock
    files are never deleted: with ``fcntl`` locks, deleting on release is racy (filelock's
    guidance); one empty file per artefact path stays in the cache instead of the model folder.
    """
    from .env import cache_dir

    dst = Path(dst)
    key = hashlib.sha256(str(dst.resolve()).encode()).hexdigest()[:16]
    return cache_dir() / "locks" / f"{dst.name[:96]}-{key}.lock"


def _beside(dst: Path) -> Path:
    return dst.parent / f".{dst.name}.lock"


@contextlib.contextmanager
def artefact_lock(dst: str | Path, timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold an exclusive lock on building ``dst`` (an empty file in the cache's ``locks/``, see :func:`lock_path`).

    Where the cache folder cannot be written, the lock is a hidden ``.NAME.lock`` beside ``dst``.
    Processes with different cache folders do not exclude each other; each artefact is still
    renamed into place whole (:func:`atomic_target`), so the cost is only a duplicated build.
    """
    from filelock import FileLock

    dst = Path(dst)
    path = lock_path(dst)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = _acquire(FileLock(str(path), timeout=timeout), dst, timeout)
    except OSError as exc:  # a read-only or missing home: lock beside the artefact instead
        log.debug("cannot lock in %s (%s); locking beside %s", path.parent, exc.strerror or exc, dst)
        lock = _acquire(FileLock(str(_beside(dst)), timeout=timeout), dst, timeout, beside=True)
    try:
        yield
    finally:
        lock.release()


def _acquire(lock, dst: Path, timeout: float, beside: bool = False):
    """``lock`` acquired; a timeout or (beside the artefact) an unwritable folder is a clear VggEdgeError."""
    from filelock import Timeout

    try:
        lock.acquire()
    except Timeout:
        raise VggEdgeError(f"{dst}: another process has been building it for {timeout:.0f} s; "
                           f"stop it or remove {lock.lock_file} if no build is running") from None
    except OSError as exc:
        if beside and exc.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
            raise TargetError(f"{dst}: folder {dst.parent} is not writable ({exc.strerror}); "
                              "expected a writable folder for the artefact") from None
        raise
    return lock
