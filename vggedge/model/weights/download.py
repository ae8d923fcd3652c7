"""Download the published VGG16 weight files: resumable, hash-verified, atomic.

Only ``urllib.request`` is used for HTTP. A file is written to ``<final>.part``,
resumed with ``Range`` after a broken transfer, hashed while streaming and
renamed to its final name only once its digest matches the published one.
"""
from __future__ import annotations

import dataclasses
import hashlib
import http.client
import logging
import os
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ...errors import DownloadError

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20
_RETRY_BACKOFF_S = 1.0  # seconds * attempt number; tests set it to 0
_USER_AGENT = "vggedge-weights-downloader"


@dataclass(frozen=True)
class PublishedWeights:
    """One published weight file; ``digest=None`` means no hash is published."""

    name: str
    url: str
    filename: str
    algorithm: str  # hashlib name: "md5", "sha256"
    digest: str | None
    digest_is_prefix: bool = False
    licence_note: str = ""


_VGG_NOTE = "original VGG16 weights: Simonyan & Zisserman, CC BY 4.0 (attribution required)"
REGISTRY: dict[str, PublishedWeights] = {e.name: e for e in (
    PublishedWeights(
        "keras", "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
        "vgg16_weights_tf_dim_ordering_tf_kernels.h5", "vgg16_weights_tf_dim_ordering_tf_kernels.h5",
        "md5", "64373286793e3c8b2b4e3219cbf3544b", False, f"Keras Applications port; {_VGG_NOTE}"),
    PublishedWeights(  # torch.hub checks only this sha256 prefix, taken from the file name
        "torchvision", "https://download.pytorch.org/models/vgg16-397923af.pth",
        "vgg16-397923af.pth", "sha256", "397923af", True,
        "torchvision ImageNet weights (BSD-3-Clause code; ImageNet terms of use apply)"),
    PublishedWeights(
        "npz", "https://www.cs.toronto.edu/~frossard/vgg16/vgg16_weights.npz",
        "vgg16_weights.npz", "sha256", None, False,
        f"Davi Frossard's conversion of the Caffe release, no hash published; {_VGG_NOTE}"),
)}


def cache_dir() -> Path:
    """``$VGGEDGE_CACHE``, else ``$XDG_CACHE_HOME/vggedge``, else ``~/.cache/vggedge`` (vggedge/env.py)."""
    from ...env import cache_dir as env_cache_dir

    return env_cache_dir()


def _resolve(name_or_entry: str | PublishedWeights) -> PublishedWeights:
    if isinstance(name_or_entry, PublishedWeights):
        return name_or_entry
    if name_or_entry not in REGISTRY:
        raise DownloadError(f"unknown weights name {name_or_entry!r}; "
                            f"valid names: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name_or_entry]


def _check(entry: PublishedWeights, actual: str, url: str, path: Path) -> str:
    """Compare a computed digest with ``entry``; warn when nothing is published."""
    if entry.digest is None:
        logger.warning(
            "%s: no published hash exists for %s; computed %s = %s. "
            "Pin it with expected_sha256=%r.", entry.name, path, entry.algorithm, actual, actual)
        return actual
    expected = entry.digest.lower()
    ok = actual.startswith(expected) if entry.digest_is_prefix else actual == expected
    if not ok:
        kind = "prefix " if entry.digest_is_prefix else ""
        raise DownloadError(
            f"hash mismatch for {path} (from {url}): {entry.algorithm} expected {kind}{expected}, "
            f"got {actual}. The download is corrupt or the file changed upstream.")
    return actual


def verify_file(path: Path, entry: PublishedWeights) -> str:
    """Hash ``path`` with ``entry.algorithm``; return the digest or raise DownloadError."""
    path = Path(path)
    h = hashlib.new(entry.algorithm)
    try:
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
    except OSError as e:
        raise DownloadError(f"cannot read {path} to verify it: {e}") from e
    return _check(entry, h.hexdigest(), entry.url, path)


class _Retry(Exception):
    """A transient failure; the next attempt may resume from the part file."""


def _hash_part(part: Path, algorithm: str) -> tuple[Any, int]:
    h, n = hashlib.new(algorithm), 0
    if part.exists():
        with open(part, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
                n += len(chunk)
    return h, n


def _attempt(url: str, part: Path, algorithm: str, progress: bool, timeout: float) -> tuple[str, bool]:
    """One GET into ``part`` (resuming if it exists); return (digest, resumed) or raise _Retry."""
    h, offset = _hash_part(part, algorithm)  # correctness first: hash what is already there
    headers = {"User-Agent": _USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        e.close()  # release the socket
        if e.code == 416 and offset:
            m = re.match(r"bytes \*/(\d+)", e.headers.get("Content-Range", ""))
            if m and int(m.group(1)) == offset:
                return h.hexdigest(), True  # the part file is already complete
            part.unlink(missing_ok=True)
            raise _Retry(f"server rejected range {offset}- (HTTP 416); restarting from zero") from e
        if e.code in (408, 429) or e.code >= 500:
            raise _Retry(f"HTTP {e.code} {e.reason}") from e
        raise DownloadError(f"download of {url} failed: HTTP {e.code} {e.reason}") from e
    except ValueError as e:
        raise DownloadError(f"invalid download URL {url!r}: {e}") from e
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise _Retry(f"cannot connect: {getattr(e, 'reason', e)}") from e
    with resp:
        cl = resp.headers.get("Content-Length", "")
        length = int(cl) if cl.isdigit() else None
        resumed = False
        if offset and resp.status == 206:
            m = re.match(r"bytes (\d+)-\d+/(\d+|\*)", resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != offset:
                part.unlink(missing_ok=True)
                raise _Retry(f"bad Content-Range {m and m.group(0)!r}; restarting from zero")
            resumed, mode = True, "ab"
            logger.info("resuming %s at byte %d", url, offset)
        else:
            if offset:
                logger.info("server ignored Range (HTTP %d); restarting %s from zero", resp.status, url)
            h, offset, mode = hashlib.new(algorithm), 0, "wb"
        total, got = (offset + length if length is not None else None), 0
        with open(part, mode) as f, tqdm(total=total, initial=offset, unit="B", unit_scale=True,
                                         unit_divisor=1024, desc=part.name[:-5],
                                         disable=not progress) as bar:
            while True:
                try:
                    chunk = resp.read(_CHUNK)
                except (OSError, http.client.HTTPException) as e:
                    raise _Retry(f"transfer broken after {offset + got} bytes: {e!r}") from e
                if not chunk:
                    break
                f.write(chunk)  # an OSError here (disk full) is not retried
                h.update(chunk)
                got += len(chunk)
                bar.update(len(chunk))
            f.flush()
            os.fsync(f.fileno())
        if length is not None and got < length:
            raise _Retry(f"transfer truncated: {offset + got} of {total} bytes")
    return h.hexdigest(), resumed


def download(
    name_or_entry: str | PublishedWeights,
    dest_dir: Path | None = None,
    *,
    url: str | None = None,
    expected_sha256: str | None = None,
    progress: bool = True,
    timeout: float = 60.0,
    retries: int = 3,
) -> Path:
    """Download (or reuse) a published weight file and return its verified path.

    ``url`` overrides the registry URL (mirrors, tests); ``expected_sha256`` replaces
    the registry hash with a full sha256 digest (use it to pin the ``npz`` file).
    """
    entry = _resolve(name_or_entry)
    if expected_sha256 is not None:
        entry = dataclasses.replace(entry, algorithm="sha256",
                                    digest=expected_sha256.strip().lower(), digest_is_prefix=False)
    src = url or entry.url
    dest = Path(dest_dir) if dest_dir is not None else cache_dir() / "weights"
    final = dest / entry.filename
    part = final.with_name(final.name + ".part")
    if final.exists():
        try:
            verify_file(final, entry)
            logger.info("%s already present and verified: %s", entry.name, final)
            return final
        except DownloadError as e:
            logger.warning("existing %s does not verify (%s); downloading again", final, e)

    attempts, last = max(1, retries), ""
    for attempt in range(1, attempts + 1):
        try:
            dest.mkdir(parents=True, exist_ok=True)
            actual, resumed = _attempt(src, part, entry.algorithm, progress, timeout)
        except _Retry as e:
            last = str(e)
            logger.warning("download of %s, attempt %d/%d: %s", src, attempt, attempts, last)
            if attempt < attempts:
                time.sleep(_RETRY_BACKOFF_S * attempt)
            continue
        except OSError as e:  # local disk trouble: not worth retrying
            part.unlink(missing_ok=True)
            raise DownloadError(f"cannot write {part}: {e}") from e
        try:
            _check(entry, actual, src, final)
        except DownloadError as e:
            part.unlink(missing_ok=True)
            if resumed and attempt < attempts:  # a stale part file may be at fault: start over
                last = str(e)
                logger.warning("%s after resuming; restarting from zero", last)
                continue
            raise
        try:
            os.replace(part, final)  # atomic: the final name only ever holds a verified file
        except OSError as e:
            raise DownloadError(f"cannot move {part} to {final}: {e}") from e
        logger.info("downloaded %s to %s", src, final)
        return final
    raise DownloadError(f"download of {src} to {final} failed after {attempts} attempts: {last}")
