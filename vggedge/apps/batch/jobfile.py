"""One writer per output, and the identity of what wrote it.

:class:`OutputLock` holds an exclusive ``flock`` on ``<out>.lock`` for the whole
job, so a second job on the same output (two ``--resume`` runs at once) stops
with a one-line error instead of interleaving duplicate rows; the lock file is
removed when the job ends. ``<out>.job.json`` records the model (file name and
SHA-256) and the options that shape the rows (``features``, ``top_k``): a
``--resume`` with a different model or options is refused instead of appending
rows that do not belong together.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ...errors import ConfigError
from .writers import beside, parts_dir_for


def lock_path_for(out: str | Path) -> Path:
    return beside(out, ".lock")


def job_path_for(out: str | Path) -> Path:
    return beside(out, ".job.json")


class OutputLock:
    """An exclusive, non-blocking lock on an output for the life of a job (``with OutputLock(out): ...``)."""

    def __init__(self, out: str | Path) -> None:
        self.out, self.path = Path(out), lock_path_for(out)
        self._fd: int | None = None

    def __enter__(self) -> "OutputLock":
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"--out {self.out}: cannot create its folder ({exc.strerror or exc})") from None
        for _ in range(10):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise ConfigError(f"--out {self.out}: cannot write beside it ({exc.strerror or exc}); "
                                  "expected a writable folder") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
                os.close(fd)
                raise ConfigError(f"output {self.out} is being written by another job (pid {holder}); wait for "
                                  "it to end or choose another --out") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:  # not a lock file its previous holder removed meanwhile
                os.ftruncate(fd, 0)
                os.pwrite(fd, str(os.getpid()).encode(), 0)
                self._fd = fd
                return self
            os.close(fd)
        raise ConfigError(f"output {self.out}: cannot take its lock {self.path}")

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            try:
                self.path.unlink(missing_ok=True)
            finally:
                os.close(self._fd)
                self._fd = None


def model_sha256(model: str | Path) -> str:
    digest = hashlib.sha256()
    with open(model, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def job_identity(model: str | Path, features: bool, top_k: int) -> dict[str, Any]:
    """What the rows of an output depend on: the model file and the options that change a row's content."""
    return {"model": Path(model).name, "model_sha256": model_sha256(model), "features": bool(features),
            **({} if features else {"top_k": int(top_k)})}


def check_job(out: str | Path, identity: dict[str, Any], *, resume: bool, overwrite: bool,
              notes: dict[str, Any] | None = None) -> None:
    """Refuse a resume whose identity differs from the recorded one; record it for a new (or overwritten) output.

    ``notes`` (the decoder asked for) are recorded beside the identity but never compared: a resume
    may decode elsewhere (GPU and CPU decoding give the same rows within rounding).
    """
    out, path = Path(out), job_path_for(out)
    started = out.exists() or parts_dir_for(out).exists()
    if resume and path.exists():
        try:
            recorded = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: cannot read the job record of {out} ({exc}); remove it to resume "
                              "without the check, or --overwrite") from None
        diff = [f"{k}: {recorded.get(k)!r} then, {v!r} now" for k, v in identity.items() if recorded.get(k) != v]
        if diff:
            raise ConfigError(f"--resume {out}: it was written with different settings ({'; '.join(diff)}); "
                              "resume with the same model and options, or write a new output (--overwrite)")
        return
    if started and not overwrite:
        return  # without --resume the writer refuses it ("already exists"); with it, an output from before
        #         job records: what wrote it is unknown, so nothing is recorded (the CSV header is still checked)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({**identity, **(notes or {})}, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)
