"""Where the images of a batch job come from: folders, globs, list files, tar shards and fsspec URLs.

Every input is expanded to *entries* in a stable order: local image paths
(absolute), remote URLs (``s3://...``, read through fsspec), and tar shards
(WebDataset style; each image member becomes one item keyed
``<shard>::<member>``). :func:`iter_items` then yields :class:`Item` objects
lazily, so only the listing, never the pixels, is held for a whole job.
"""
from __future__ import annotations

import collections
import glob
import os
import stat
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from ...errors import ConfigError
from ...preprocess import IMAGE_SUFFIXES

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
LIST_SUFFIXES = (".txt", ".lst", ".list")
MEMBER_SEP = "::"
_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class Item:
    """One image to process: its key (path, URL or ``shard::member``), for tar members its bytes,
    and ``error`` (with its ``kind``) when the source itself could not be read (reported, never dropped)."""

    key: str
    data: bytes | None = None
    error: str | None = None
    kind: str | None = None


def is_url(text: str) -> bool:
    """True for ``scheme://`` locations other than ``file://`` (read through fsspec)."""
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.lower() != "file" and len(scheme) > 1


def is_tar(name: str) -> bool:
    return name.lower().endswith(TAR_SUFFIXES)


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def expand(inputs: Sequence[str | Path], ignored: collections.Counter | None = None) -> list[str]:
    """Resolve folders (recursively), globs, list files, tar shards and URLs to entries, deduplicated in order.

    Files met in folders that are neither images nor tar shards are counted in ``ignored``
    by reason, so every file a job finds is accounted for.
    """
    if not inputs:
        raise ConfigError("no inputs given; expected folders, globs, list files, tar shards or URLs")
    entries: dict[str, None] = {}
    ignored = collections.Counter() if ignored is None else ignored
    for source in inputs:
        for entry in _expand_one(str(source), top=True, ignored=ignored):
            entries.setdefault(entry, None)
    return list(entries)


def _expand_one(text: str, top: bool, base: Path | None = None, ignored: collections.Counter | None = None,
                lists: tuple[str, ...] = ()) -> Iterator[str]:
    if text.startswith("file://"):
        text = text[len("file://"):]
    if is_url(text):
        yield from _expand_url(text)
        return
    path = Path(text) if base is None or Path(text).is_absolute() else base / text
    if path.is_dir():
        yield from _walk(path, ignored)
    elif path.is_file() and path.name.lower().endswith(LIST_SUFFIXES):
        yield from _read_list(path, ignored, lists)
    elif path.exists():
        yield os.path.abspath(path)  # named explicitly: processed whatever its suffix (and reported if bad)
    elif _GLOB_CHARS & set(text):
        for match in sorted(glob.glob(str(path), recursive=True)):
            if os.path.isfile(match) and (is_image_name(match) or is_tar(match)):
                yield os.path.abspath(match)
    elif top:
        raise ConfigError(f"input {text!r}: no such file, folder or glob match; expected folders, globs, "
                          "list files (.txt), tar shards or URLs")
    else:
        yield os.path.abspath(path)  # listed but missing: reported as unreadable, never silently dropped


def _walk(folder: Path, ignored: collections.Counter | None = None) -> Iterator[str]:
    """Image files and tar shards under ``folder``, recursively, in sorted order (others counted in ``ignored``)."""
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if is_image_name(name) or is_tar(name):
                yield os.path.abspath(os.path.join(root, name))
            elif ignored is not None:
                ignored["not an image or tar name"] += 1


MAX_LIST_DEPTH = 32  #: list files naming list files, at most this deep


def _read_list(path: Path, ignored: collections.Counter | None = None, lists: tuple[str, ...] = ()) -> Iterator[str]:
    """A text file with one input per line (blank lines and ``#`` comments ignored), relative to its folder."""
    real = os.path.realpath(path)
    if real in lists:
        raise ConfigError(f"list file {path} includes itself (through {' -> '.join(lists + (real,))}); "
                          "expected a list of images, folders or other list files")
    if len(lists) >= MAX_LIST_DEPTH:
        raise ConfigError(f"list file {path}: list files nested over {MAX_LIST_DEPTH} deep")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"list file {path}: cannot read it ({exc}); expected UTF-8 text, one path per line")
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#"):
            yield from _expand_one(line, top=False, base=path.parent, ignored=ignored, lists=lists + (real,))


def _expand_url(url: str) -> Iterator[str]:
    from .remote import is_http

    if is_http(url):  # never listed: listing an HTTP "folder" downloads the whole body
        if url.lower().endswith(LIST_SUFFIXES):
            from .remote import RemoteError, read_url

            try:
                text = read_url(url, 16 * 2**20, 30.0).decode("utf-8")
            except (RemoteError, UnicodeDecodeError) as exc:
                raise ConfigError(f"list file {url}: cannot read it ({exc}); expected UTF-8 text, one URL per line")
            for line in text.splitlines():
                if line.strip() and not line.startswith("#"):
                    yield from _expand_one(line.strip(), top=False)
        else:
            yield url
        return
    from .remote import fsspec_module

    fsspec = fsspec_module()
    fs, _, [root] = fsspec.get_fs_token_paths(url)
    if _GLOB_CHARS & set(url):
        found = fs.glob(root)
    elif fs.isdir(root):
        found = fs.find(root)
    elif url.lower().endswith(LIST_SUFFIXES):
        with fs.open(root, "rt") as handle:
            found = [line.strip() for line in handle if line.strip() and not line.startswith("#")]
        for line in found:
            yield from _expand_one(line, top=False)
        return
    else:
        found = [root]
    for name in sorted(found):
        full = name if is_url(name) else fs.unstrip_protocol(name)
        if len(found) == 1 or is_image_name(name) or is_tar(name):
            yield full


def count_items(entries: Iterable[str]) -> int | None:
    """How many images the entries hold (tar shards counted by their headers); None when a remote shard is listed."""
    total = 0
    for entry in entries:
        if not is_tar(entry):
            total += 1
        elif is_url(entry):
            return None
        elif _not_regular(entry):
            total += 1
        else:
            try:
                with tarfile.open(entry) as tar:
                    total += sum(1 for m in tar if m.isfile() and is_image_name(m.name))
            except (OSError, tarfile.TarError, EOFError):
                total += 1  # reported as one unreadable shard
    return total


def _not_regular(path: str) -> str | None:
    """Why a local path is not a regular file (without opening it); None when it is one (or is missing)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    return "named pipe" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode) else \
        "folder" if stat.S_ISDIR(mode) else "device"


def iter_items(entries: Iterable[str], skip: frozenset[str] | set[str] = frozenset(),
               max_bytes: int | None = None) -> Iterator[Item]:
    """Items lazily, in entry order, without those whose key is in ``skip`` (already written).

    Tar members larger than ``max_bytes`` (their header says so) become error items and are never read.
    """
    for entry in entries:
        if is_tar(entry):
            yield from _tar_items(entry, skip, max_bytes)
        elif entry not in skip:
            yield Item(entry)


def _tar_items(shard: str, skip: frozenset[str] | set[str], max_bytes: int | None = None) -> Iterator[Item]:
    """Image members of a shard, streamed in order; an unreadable shard becomes one item that fails to read."""
    special = None if is_url(shard) else _not_regular(shard)
    if special:
        yield Item(shard, error=f"tar shard is not a regular file ({special}); not opened")
        return
    try:
        from .remote import fsspec_module

        handle = fsspec_module().open(shard, "rb").open() if is_url(shard) else open(shard, "rb")
    except OSError as exc:
        yield Item(shard, error=f"cannot open tar shard ({exc})")
        return
    with handle:
        try:
            with tarfile.open(fileobj=handle, mode="r|*") as tar:
                for member in tar:
                    key = f"{shard}{MEMBER_SEP}{member.name}"
                    if not member.isfile() or not is_image_name(member.name) or key in skip:
                        continue
                    if max_bytes is not None and member.size > max_bytes:
                        yield Item(key, error=f"tar member is {member.size} bytes; the limit is {max_bytes} "
                                              "(--max-bytes); not read", kind="too-large")
                        continue
                    extracted = tar.extractfile(member)
                    yield Item(key, extracted.read() if extracted else b"")
        except (OSError, tarfile.TarError, EOFError, zlib.error) as exc:
            yield Item(f"{shard}{MEMBER_SEP}<rest of shard>", error=f"tar shard unreadable from here on ({exc})")
