"""Where the images of a batch job come from: folders, globs, list files, tar shards and fsspec URLs.

Every input is expanded to *entries* in a stable order: local image paths
(absolute), remote URLs (``s3://...``, read through fsspec), and tar shards
(WebDataset style; each image member becomes one item keyed
``<shard>::<member>``). :func:`iter_items` then yields :class:`Item` objects
lazily, so only the listing, never the pixels, is held for a whole job.
"""
from __future__ import annotations

import glob
import os
import tarfile
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
    and ``error`` when the source itself could not be read (reported, never dropped)."""

    key: str
    data: bytes | None = None
    error: str | None = None


def is_url(text: str) -> bool:
    """True for ``scheme://`` locations other than ``file://`` (read through fsspec)."""
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.lower() != "file" and len(scheme) > 1


def is_tar(name: str) -> bool:
    return name.lower().endswith(TAR_SUFFIXES)


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def fsspec_module():
    """fsspec, or a ConfigError saying how to install it."""
    try:
        import fsspec
    except ImportError:
        raise ConfigError("remote inputs (scheme://...) are read through fsspec, which is not installed: "
                          "pip install fsspec (plus s3fs, gcsfs, ... for your object store)") from None
    return fsspec


def expand(inputs: Sequence[str | Path]) -> list[str]:
    """Resolve folders (recursively), globs, list files, tar shards and URLs to entries, deduplicated in order."""
    if not inputs:
        raise ConfigError("no inputs given; expected folders, globs, list files, tar shards or URLs")
    entries: dict[str, None] = {}
    for source in inputs:
        for entry in _expand_one(str(source), top=True):
            entries.setdefault(entry, None)
    return list(entries)


def _expand_one(text: str, top: bool, base: Path | None = None) -> Iterator[str]:
    if text.startswith("file://"):
        text = text[len("file://"):]
    if is_url(text):
        yield from _expand_url(text)
        return
    path = Path(text) if base is None or Path(text).is_absolute() else base / text
    if path.is_dir():
        yield from _walk(path)
    elif path.is_file() and path.name.lower().endswith(LIST_SUFFIXES):
        yield from _read_list(path)
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


def _walk(folder: Path) -> Iterator[str]:
    """Image files and tar shards under ``folder``, recursively, in sorted order."""
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if is_image_name(name) or is_tar(name):
                yield os.path.abspath(os.path.join(root, name))


def _read_list(path: Path) -> Iterator[str]:
    """A text file with one input per line (blank lines and ``#`` comments ignored), relative to its folder."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"list file {path}: cannot read it ({exc}); expected UTF-8 text, one path per line")
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#"):
            yield from _expand_one(line, top=False, base=path.parent)


def _expand_url(url: str) -> Iterator[str]:
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
        else:
            try:
                with tarfile.open(entry) as tar:
                    total += sum(1 for m in tar if m.isfile() and is_image_name(m.name))
            except (OSError, tarfile.TarError):
                total += 1  # reported as one unreadable shard
    return total


def iter_items(entries: Iterable[str], skip: frozenset[str] | set[str] = frozenset()) -> Iterator[Item]:
    """Items lazily, in entry order, without those whose key is in ``skip`` (already written)."""
    for entry in entries:
        if is_tar(entry):
            yield from _tar_items(entry, skip)
        elif entry not in skip:
            yield Item(entry)


def _tar_items(shard: str, skip: frozenset[str] | set[str]) -> Iterator[Item]:
    """Image members of a shard, streamed in order; an unreadable shard becomes one item that fails to read."""
    try:
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
                    extracted = tar.extractfile(member)
                    yield Item(key, extracted.read() if extracted else b"")
        except (OSError, tarfile.TarError, EOFError) as exc:
            yield Item(f"{shard}{MEMBER_SEP}<rest of shard>", error=f"tar shard unreadable from here on ({exc})")
