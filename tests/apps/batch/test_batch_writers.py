"""Result writers: append + resume for JSON lines and CSV, parts then combine for Parquet and .npy."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vggedge.apps.batch.names import DoneKeys, row_key
from vggedge.apps.batch.readers import read_rows
from vggedge.apps.batch.rows import columns, error_row
from vggedge.apps.batch.writers import errors_path_for, open_writer, parts_dir_for
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


def test_row_keys_hold_no_credentials_and_done_keys_match_the_inputs() -> None:
    """URLs are stored without their password (a remote shard's member name kept as the shard holds it); local
    names exactly as given, whatever they hold; an input read with its password is found among the keys written without it,
    and among keys an older output stored with it."""
    url = "http://user:pw@host:8000/a.jpg"
    assert row_key(url) == "http://user:***@host:8000/a.jpg"
    assert row_key("https://u:pw@h/x.tar::odd;token=1.jpg") == "https://u:***@h/x.tar::odd;token=1.jpg"
    for local in ("/data/user:pw@host/a.jpg", "/data/x;token=abc.jpg", "photos:/u:p@h.jpg"):
        assert row_key(local) == local
    done = DoneKeys([row_key(url)]) | DoneKeys(["/data/x;token=abc.jpg"])
    assert url in done and "/data/x;token=abc.jpg" in done and "http://user:other@host:8000/b.jpg" not in done
    assert url in DoneKeys([url]) and done == {"http://user:***@host:8000/a.jpg", "/data/x;token=abc.jpg"}
    assert error_row(url, "unreadable", f"cannot read {url}") == {
        "path": "http://user:***@host:8000/a.jpg", "kind": "unreadable",
        "reason": "cannot read http://user:***@host:8000/a.jpg"}


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
