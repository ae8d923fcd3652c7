"""Names as written in outputs: every name the OS allows, exactly, in every format.

File names are ``str`` with undecodable bytes kept as lone surrogates (Python's
``surrogateescape``, what :func:`os.listdir` gives). JSON lines escape them
(``\\udcXX``), Parquet keeps such a name's bytes in ``path_bytes``, and a
``.npy`` output's names are JSON strings, one per line, so newlines, form feeds
and U+2028 in a name never split it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


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
