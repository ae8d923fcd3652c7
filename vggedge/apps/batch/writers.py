"""Result writers chosen by the output's extension: JSON lines, CSV, Parquet, NumPy (.npy features).

Every writer appends one batch at a time and flushes it, so a killed job keeps
what it finished. ``resume=True`` reads back what is already written
(:meth:`Writer.done`) so the job skips exactly those images; a half-written last
line is cut off first. Formats that cannot be appended (Parquet, .npy) write
one part file per batch (``<out>.parts/``, each renamed into place when whole)
and combine them under the final name only at :meth:`Writer.finish`, so the
output is never half-written under its final name.
"""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ConfigError
from .names import DoneKeys, json_line, npy_paths_file, parquet_path, read_npy_paths
from .readers import LIST_COLUMNS, format_of, iter_rows, pyarrow_modules
from .rows import ERROR_COLUMNS, columns

def beside(out: str | Path, suffix: str) -> Path:
    """A file that belongs to an output, named after it: ``results.jsonl`` -> ``results.jsonl<suffix>``."""
    out = Path(out)
    return out.with_name(out.name + suffix)


def errors_path_for(out: str | Path) -> Path:
    """The errors file next to an output: ``results.jsonl`` -> ``results.jsonl.errors.jsonl``."""
    return beside(out, ".errors.jsonl")


def parts_dir_for(out: str | Path) -> Path:
    return beside(out, ".parts")


class Writer(ABC):
    """Appends rows batch by batch; ``finish()`` makes the final file, ``close()`` keeps a resumable state."""

    def __init__(self, path: str | Path, fields: tuple[str, ...], *, resume: bool = False,
                 overwrite: bool = False) -> None:
        self.path, self.fields = Path(path), fields
        started = self.path.exists() or parts_dir_for(self.path).exists()
        if started and not (resume or overwrite):
            raise ConfigError(f"output {self.path} already exists; pass --resume to continue it "
                              "or --overwrite to start again")
        if started and overwrite and not resume:
            self.path.unlink(missing_ok=True)
            shutil.rmtree(parts_dir_for(self.path), ignore_errors=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.written = 0

    @abstractmethod
    def done(self) -> DoneKeys:
        """Row keys already written (read back on resume); ``input key in done`` matches by row key."""

    @abstractmethod
    def write(self, rows: list[dict[str, Any]]) -> None:
        """Append rows durably (flushed before returning)."""

    def finish(self) -> Path:
        """Make the final output (after the last batch)."""
        self.close()
        return self.path

    def close(self) -> None:
        """Flush and release the file; what is written stays resumable."""

    def __enter__(self) -> "Writer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LineWriter(Writer):
    """Shared by JSON lines and CSV: an append-only text file, whole lines only."""

    errors = "strict"

    def __init__(self, path: str | Path, fields: tuple[str, ...], **kw: Any) -> None:
        super().__init__(path, fields, **kw)
        self._cut_partial_line()
        self._handle = open(self.path, "a", encoding="utf-8", errors=self.errors, newline="")
        if self._handle.tell() == 0:
            self._write_header()

    def _cut_partial_line(self) -> None:
        """A kill in the middle of a write leaves a line without its newline: drop it."""
        if not self.path.exists():
            return
        with open(self.path, "rb+") as handle:
            data = handle.read()
            end = data.rfind(b"\n") + 1
            if end != len(data):
                handle.truncate(end)

    def _write_header(self) -> None:
        pass

    def write(self, rows: list[dict[str, Any]]) -> None:
        self._handle.write("".join(self._line(row) for row in rows))
        self._handle.flush()
        self.written += len(rows)

    @abstractmethod
    def _line(self, row: dict[str, Any]) -> str: ...

    def done(self) -> DoneKeys:
        """Row keys already written; a line that is not a result row stops the resume with a one-line error."""
        keys: set[str] = set()
        if not self.path.stat().st_size:
            return keys
        number = 1 if format_of(self.path) == "csv" else 0  # CSV: line 1 is the header
        rows = iter_rows(self.path)
        while True:
            number += 1
            try:
                row = next(rows)
            except StopIteration:
                break
            except (ValueError, csv.Error) as exc:
                raise self._not_a_row(number, str(exc)) from None
            if not isinstance(row, dict) or not isinstance(row.get("path"), str) or not row["path"]:
                raise self._not_a_row(number, "it has no path")
            keys.add(row["path"])
        return DoneKeys(keys)

    def _not_a_row(self, number: int, why: str) -> ConfigError:
        return ConfigError(f"output {self.path}: line {number} is not a result row ({why[:80]}); cannot resume "
                           "from it: repair or remove that line, or start again with --overwrite")

    def close(self) -> None:
        if not self._handle.closed:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()


class JsonlWriter(LineWriter):
    def _line(self, row: dict[str, Any]) -> str:
        return json_line(row)


class CsvWriter(LineWriter):
    """CSV with a header; list columns hold JSON text (``[3, 1, 7]``). File names that are not valid UTF-8
    are written as their own bytes (``surrogateescape``), as the OS gave them."""

    errors = "surrogateescape"

    def __init__(self, path: str | Path, fields: tuple[str, ...], **kw: Any) -> None:
        resume = kw.get("resume") and Path(path).exists() and Path(path).stat().st_size
        if resume:
            with open(path, encoding="utf-8", errors="surrogateescape", newline="") as handle:
                header = next(csv.reader(handle), [])
            if header and tuple(header) != fields:
                raise ConfigError(f"output {path}: its columns are {', '.join(header)}; this job writes "
                                  f"{', '.join(fields)} (--features differs?); resume with the same options "
                                  "or write a new output")
        super().__init__(path, fields, **kw)

    def _write_header(self) -> None:
        self._handle.write(self._format(list(self.fields)))
        self._handle.flush()

    def _line(self, row: dict[str, Any]) -> str:
        return self._format([json.dumps(row[f]) if f in LIST_COLUMNS else row[f] for f in self.fields])

    @staticmethod
    def _format(values: list[Any]) -> str:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(values)
        return buf.getvalue()


class PartsWriter(Writer):
    """One part file per batch under ``<out>.parts/``; combined into ``out`` by :meth:`finish`."""

    suffix = ".part"

    def __init__(self, path: str | Path, fields: tuple[str, ...], **kw: Any) -> None:
        super().__init__(path, fields, **kw)
        self.parts = parts_dir_for(self.path)
        if self.path.exists() and not self.parts.exists():  # resuming a finished job: its output is part 0
            self.parts.mkdir()
            self._adopt_final()
        self.parts.mkdir(exist_ok=True)
        for tmp in self.parts.glob("*.tmp"):  # a part killed while being written
            tmp.unlink()
        self._next = 1 + max((int(p.stem.split("-")[1]) for p in self._part_files()), default=-1)

    def _part_files(self) -> list[Path]:
        return sorted(self.parts.glob(f"part-*{self.suffix}"))

    def _new_part(self) -> tuple[Path, Path]:
        final = self.parts / f"part-{self._next:06d}{self.suffix}"
        self._next += 1
        return final, final.with_name(final.name + ".tmp")

    def write(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        final, tmp = self._new_part()
        self._write_part(rows, tmp)
        os.replace(tmp, final)
        self.written += len(rows)

    def finish(self) -> Path:
        tmp = self.path.with_name(self.path.name + ".tmp")
        self._combine(self._part_files(), tmp)
        os.replace(tmp, self.path)
        shutil.rmtree(self.parts, ignore_errors=True)
        return self.path

    @abstractmethod
    def _adopt_final(self) -> None: ...

    @abstractmethod
    def _write_part(self, rows: list[dict[str, Any]], tmp: Path) -> None: ...

    @abstractmethod
    def _combine(self, parts: list[Path], tmp: Path) -> None: ...


def arrow_schema(fields: tuple[str, ...]):
    """The Parquet schema of result rows (every part and the final file share it)."""
    pa, _ = pyarrow_modules()
    types = {"path": pa.string(), "top_k_index": pa.list_(pa.int64()), "top_k_label": pa.list_(pa.string()),
             "top_k_score": pa.list_(pa.float64()), "features": pa.list_(pa.float32()), "model": pa.string(),
             "precision": pa.string(), "backend": pa.string(), "decode_ms": pa.float64(), "infer_ms": pa.float64(),
             "path_bytes": pa.binary()}
    return pa.schema([(f, types[f]) for f in fields])


class ParquetWriter(PartsWriter):
    """Parquet strings must be UTF-8: a name that is not keeps its exact bytes in ``path_bytes``
    (null otherwise) and a readable ``path``; :func:`read_rows` gives back the original name."""

    suffix = ".parquet"

    def __init__(self, path: str | Path, fields: tuple[str, ...], **kw: Any) -> None:
        super().__init__(path, fields, **kw)
        self.columns = (*fields, "path_bytes")  # the rows' fields, and the one this writer derives from the path

    def _adopt_final(self) -> None:
        os.replace(self.path, self.parts / f"part-000000{self.suffix}")

    def done(self) -> DoneKeys:
        _, pq = pyarrow_modules()
        keys: set[str] = set()
        for part in self._part_files():
            table = pq.read_table(part)
            raw = table.column("path_bytes").to_pylist() if "path_bytes" in table.column_names else None
            for i, key in enumerate(table.column("path").to_pylist()):
                keys.add(os.fsdecode(raw[i]) if raw and raw[i] is not None else key)
        return DoneKeys(keys)

    def _write_part(self, rows: list[dict[str, Any]], tmp: Path) -> None:
        pa, pq = pyarrow_modules()
        rows = [{**row, **parquet_path(row["path"])} for row in rows]
        pq.write_table(pa.Table.from_pylist(rows, schema=arrow_schema(self.columns)), tmp)

    def _combine(self, parts: list[Path], tmp: Path) -> None:
        _, pq = pyarrow_modules()
        with pq.ParquetWriter(tmp, arrow_schema(self.columns)) as out:
            for part in parts:
                out.write_table(pq.read_table(part).cast(arrow_schema(self.columns)))


class NpyWriter(PartsWriter):
    """Features as an (N, D) float32 matrix in ``out`` and its rows' paths in ``<out>.paths.jsonl``: one JSON
    string per line, so any name (newlines, form feeds, U+2028, bytes that are not UTF-8) maps to its row."""

    suffix = ".npz"

    @property
    def paths_file(self) -> Path:
        return npy_paths_file(self.path)

    def _adopt_final(self) -> None:
        keys = read_npy_paths(self.path)
        np.savez(self.parts / f"part-000000{self.suffix}", paths=np.array(keys, dtype=str),
                 features=np.load(self.path))
        self.paths_file.unlink(missing_ok=True)

    def done(self) -> DoneKeys:
        keys: set[str] = set()
        for part in self._part_files():
            with np.load(part) as data:
                keys.update(str(k) for k in data["paths"])
        return DoneKeys(keys)

    def _write_part(self, rows: list[dict[str, Any]], tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, paths=np.array([r["path"] for r in rows], dtype=str),
                     features=np.asarray([r["features"] for r in rows], np.float32))

    def _combine(self, parts: list[Path], tmp: Path) -> None:
        keys, feats = [], []
        for part in parts:
            with np.load(part) as data:
                keys.extend(str(k) for k in data["paths"])
                feats.append(data["features"])
        with open(tmp, "wb") as handle:
            np.save(handle, np.concatenate(feats) if feats else np.zeros((0, 0), np.float32))
        paths_tmp = self.paths_file.with_name(self.paths_file.name + ".tmp")
        paths_tmp.write_text("".join(json.dumps(k) + "\n" for k in keys), encoding="ascii")
        os.replace(paths_tmp, self.paths_file)


def open_writer(out: str | Path, features: bool, *, resume: bool = False, overwrite: bool = False) -> Writer:
    """The writer for ``out``'s extension."""
    kind = format_of(out)
    if kind == "npy" and not features:
        raise ConfigError(f"output {out}: .npy holds feature vectors; use a features model (include_top=False "
                          "with pooling) or --features, or write .jsonl/.csv/.parquet")
    cls = {"jsonl": JsonlWriter, "csv": CsvWriter, "parquet": ParquetWriter, "npy": NpyWriter}[kind]
    return cls(out, columns(features), resume=resume, overwrite=overwrite)


def open_errors(out: str | Path, *, resume: bool = False, overwrite: bool = False) -> JsonlWriter:
    """The errors file next to ``out`` (JSON lines: path, kind, reason)."""
    return JsonlWriter(errors_path_for(out), ERROR_COLUMNS, resume=resume, overwrite=overwrite)
