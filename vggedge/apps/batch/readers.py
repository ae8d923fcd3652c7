"""Result files read back, in any output format: JSON lines, CSV, Parquet and ``.npy`` features.

:func:`read_rows` gives every row as the dict it was written from (CSV list columns
decoded, numbers as numbers, names exactly as written: see :mod:`.names`). The
writers (:mod:`.writers`) use it to resume; users use it to load results.
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from ...errors import ConfigError
from .names import read_npy_paths

LIST_COLUMNS = ("top_k_index", "top_k_label", "top_k_score", "features")


def format_of(out: str | Path) -> str:
    """``jsonl``, ``csv``, ``parquet`` or ``npy`` from the output's extension."""
    suffix = Path(out).suffix.lower()
    kinds = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet",
             ".npy": "npy"}
    if suffix not in kinds:
        raise ConfigError(f"output {out}: unknown extension {suffix!r}; expected .jsonl, .csv, .parquet or .npy")
    return kinds[suffix]


def pyarrow_modules():
    """pyarrow and pyarrow.parquet, or a ConfigError saying how to install them."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError("Parquet output needs pyarrow: pip install 'vggedge[batch]'") from None
    return pa, pq


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of any output format as dicts (CSV lists decoded, numbers as numbers), in file order."""
    return list(iter_rows(path))


def iter_rows(path: str | Path) -> Iterator[dict[str, Any]]:
    """Rows of any output format, lazily, in file order."""
    path = Path(path)
    kind = format_of(path) if path.suffix.lower() != ".jsonl" else "jsonl"
    if kind == "jsonl":
        with open(path, encoding="utf-8") as handle:
            yield from (json.loads(line) for line in handle if line.endswith("\n"))
    elif kind == "csv":
        with open(path, encoding="utf-8", errors="surrogateescape", newline="") as handle:
            yield from (_csv_row(row) for row in csv.DictReader(handle))
    elif kind == "parquet":
        _, pq = pyarrow_modules()
        for row in pq.read_table(path).to_pylist():
            raw = row.pop("path_bytes", None)
            yield {**row, "path": os.fsdecode(raw)} if raw is not None else row
    else:
        keys = read_npy_paths(path)
        yield from ({"path": k, "features": [float(v) for v in f]} for k, f in zip(keys, np.load(path)))


def _csv_row(row: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key in LIST_COLUMNS:
            out[key] = json.loads(value)
        elif key.endswith("_ms"):
            out[key] = float(value)
        else:
            out[key] = value
    return out


def without(rows: Iterable[dict[str, Any]], names: Iterable[str]) -> list[dict[str, Any]]:
    """Rows without some columns (e.g. timing, to compare runs)."""
    drop = set(names)
    return [{k: v for k, v in row.items() if k not in drop} for row in rows]
