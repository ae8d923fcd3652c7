"""Names as written in outputs: every name the OS allows, exactly, in every format; URLs without credentials.

File names are ``str`` with undecodable bytes kept as lone surrogates (Python's
``surrogateescape``, what :func:`os.listdir` gives). JSON lines escape them
(``\\udcXX``), Parquet keeps such a name's bytes in ``path_bytes``, and a
``.npy`` output's names are JSON strings, one per line, so newlines, form feeds
and U+2028 in a name never split it. An input is stored under its :func:`row_key`:
a URL's password and secret query values are replaced by ``***``, and ``--resume``
matches inputs by that key (:class:`DoneKeys`).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

from ...redact import redact_uri
from .inputs import MEMBER_SEP, is_tar, is_url


def row_key(key: str) -> str:
    """The name an input is stored under in every output and errors file: a local path exactly as given, a
    URL (also a remote tar shard's ``shard::member``) with credentials redacted (``http://user:***@host/x.jpg``)."""
    if not is_url(key):
        return key
    at = key.find(MEMBER_SEP)
    while at != -1 and not is_tar(key[:at]):  # a shard's member name is kept as the shard holds it
        at = key.find(MEMBER_SEP, at + 1)
    return redact_uri(key) if at == -1 else redact_uri(key[:at]) + key[at:]


class DoneKeys(frozenset):
    """Row keys already written. ``key in done`` takes an input's key as the job reads it (a URL with its
    password) and matches it by :func:`row_key`, so ``--resume`` skips exactly the finished inputs; keys that
    an older output stored with credentials are redacted when read back, so they match too."""

    def __new__(cls, keys: Iterable[str] = ()) -> "DoneKeys":
        return super().__new__(cls, (row_key(k) for k in keys))

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(row_key(key))

    def __or__(self, other: Iterable[str]) -> "DoneKeys":  # type: ignore[override]
        return DoneKeys([*self, *other])


def json_line(value: Any) -> str:
    """One JSON line; names that are not valid UTF-8 (kept as lone surrogates) are written as ``\\udcXX`` escapes,
    so :func:`json.loads` gives back the same string and :func:`os.fsencode` the same bytes."""
    line = json.dumps(value, ensure_ascii=False)
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        line = json.dumps(value)
    return line + "\n"


def parquet_path(key: str) -> dict[str, Any]:
    """``path`` (valid UTF-8; undecodable bytes shown as U+FFFD) and ``path_bytes`` (the exact name, when needed)."""
    try:
        key.encode("utf-8")
        return {"path": key, "path_bytes": None}
    except UnicodeEncodeError:
        raw = os.fsencode(key)
        return {"path": raw.decode("utf-8", "replace"), "path_bytes": raw}


def npy_paths_file(out: str | Path) -> Path:
    """``<out>.paths.jsonl``: the row names of a ``.npy`` output."""
    out = Path(out)
    return out.with_name(out.name + ".paths.jsonl")


def read_npy_paths(out: str | Path) -> list[str]:
    """The row names of a ``.npy`` output, in row order."""
    with open(npy_paths_file(out), encoding="ascii") as handle:
        return [json.loads(line) for line in handle if line.strip()]
