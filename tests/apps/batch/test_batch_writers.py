"""Result writers: append + resume for JSON lines and CSV, parts then combine for Parquet and .npy."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vggedge.apps.batch.rows import columns
from vggedge.apps.batch.writers import errors_path_for, open_writer, parts_dir_for, read_rows
from vggedge.errors import ConfigError


def rows(start: int, n: int) -> list[dict]:
    return [{"path": f"/img/{i}.jpg", "top_k_index": [i, 1], "top_k_label": [f"c{i}", "c1"],
             "top_k_score": [0.75, 0.25], "model": "m.onnx", "precision": "fp32", "backend": "ort-cpu",
             "decode_ms": 1.5, "infer_ms": 2.5} for i in range(start, start + n)]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_line_formats_cut_a_half_written_line_on_resume(tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"r{suffix}"
    with open_writer(out, False) as writer:
        writer.write(rows(0, 3))
    with open(out, "a") as handle:
        handle.write('{"path": "/img/9.jpg", "top_k' if suffix == ".jsonl" else '/img/9.jpg,"[9, ')
    with open_writer(out, False, resume=True) as writer:
        assert writer.done() == {"/img/0.jpg", "/img/1.jpg", "/img/2.jpg"}
        writer.write(rows(3, 2))
        writer.finish()
    assert read_rows(out) == rows(0, 5)


def test_parquet_is_written_as_parts_and_combined_only_at_the_end(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow", reason="Parquet output needs pyarrow (pip install 'vggedge[batch]')")
    out = tmp_path / "r.parquet"
    writer = open_writer(out, False)
    writer.write(rows(0, 2))
    writer.write(rows(2, 2))
    writer.close()  # killed here: no final file, two whole parts
    assert not out.exists() and len(list(parts_dir_for(out).glob("part-*.parquet"))) == 2
    (parts_dir_for(out) / "part-000002.parquet.tmp").write_bytes(b"half a part")
    writer = open_writer(out, False, resume=True)
    assert writer.done() == {f"/img/{i}.jpg" for i in range(4)}
    writer.write(rows(4, 1))
    writer.finish()
    assert read_rows(out) == rows(0, 5) and not parts_dir_for(out).exists()
    writer = open_writer(out, False, resume=True)  # resuming a finished job adopts its output
    assert len(writer.done()) == 5
    writer.write(rows(5, 1))
    writer.finish()
    assert read_rows(out) == rows(0, 6)


def test_npy_features_with_their_paths(tmp_path: Path) -> None:
    out = tmp_path / "f.npy"
    writer = open_writer(out, True)
    assert writer.fields == columns(True)
    feats = [{"path": f"/img/{i}.jpg", "features": [float(i)] * 3} for i in range(3)]
    writer.write(feats[:2])
    writer.write(feats[2:])
    writer.finish()
    np.testing.assert_array_equal(np.load(out), np.repeat(np.arange(3, dtype=np.float32)[:, None], 3, axis=1))
    assert [r["path"] for r in read_rows(out)] == [f["path"] for f in feats]


def test_refusals(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown extension '.txt'"):
        open_writer(tmp_path / "r.txt", False)
    (tmp_path / "r.jsonl").write_text("")
    with pytest.raises(ConfigError, match="already exists"):
        open_writer(tmp_path / "r.jsonl", False)
    assert errors_path_for(tmp_path / "r.csv") == tmp_path / "r.csv.errors.jsonl"
