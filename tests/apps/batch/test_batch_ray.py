"""The Ray engine on a real local Ray instance (2 CPUs, started once for this module) against the local engine."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import pytest
from batch_images import MAX_PIXELS

from vggedge.apps.batch.rows import TIMING_COLUMNS
from vggedge.apps.batch.readers import without
from vggedge.batch import errors_path_for, read_rows, run
from vggedge.errors import EXIT_PARTIAL, BackendUnavailable, ConfigError

OPTS = dict(batch_size=4, max_pixels=MAX_PIXELS, progress=False)


@pytest.fixture(scope="module")
def ray_instance() -> Iterator[object]:
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'vggedge[ray]'); "
                                            "the Ray engine tests need a real Ray instance")
    pytest.importorskip("ray.data", reason="Ray Data is not installed (pip install 'ray[data]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def comparable(rows: list[dict], approx: bool = False) -> list[dict]:
    """Rows without timing, sorted by path; with ``approx`` the scores compare with a float tolerance."""
    rows = without(rows, TIMING_COLUMNS)
    for row in rows if approx else ():
        row["top_k_score"] = pytest.approx(row["top_k_score"], rel=1e-5, abs=1e-7)
    return sorted(rows, key=lambda r: r["path"])


def test_ray_rows_equal_the_local_engines(ray_instance, tmp_path: Path, batch_model: Path, image_set) -> None:
    folder, good, broken = image_set
    local = run([folder], out=tmp_path / "local.jsonl", model=batch_model, **OPTS)
    summary = run([folder], out=tmp_path / "ray.parquet", model=batch_model, engine="ray", **OPTS)
    assert (summary.engine, summary.images, summary.failed) == ("ray", len(good), len(broken))
    assert summary.exit_status == EXIT_PARTIAL and (summary.backend, summary.precision) == ("ort-cpu", "fp32")
    ray_rows = read_rows(tmp_path / "ray.parquet")
    assert len(ray_rows) == len(good) == local.images
    assert comparable(ray_rows) == comparable(read_rows(tmp_path / "local.jsonl"), approx=True)
    errors = read_rows(errors_path_for(tmp_path / "ray.parquet"))
    assert {e["path"]: e["kind"] for e in errors} == broken
    assert sorted(errors, key=lambda e: e["path"]) == sorted(read_rows(errors_path_for(tmp_path / "local.jsonl")),
                                                            key=lambda e: e["path"])
    # decoding runs in CPU tasks apart from the inference actor: at least two worker processes report memory
    assert len(summary.worker_peak_rss_mb) >= 2 and all(mb > 0 for mb in summary.worker_peak_rss_mb.values())
    assert not (tmp_path / "ray.parquet.ray").exists() and not (tmp_path / "ray.parquet.parts").exists()

    again = run([folder], out=tmp_path / "ray.parquet", model=batch_model, engine="ray", resume=True, **OPTS)
    assert (again.images, again.failed, again.skipped) == (0, 0, len(good) + len(broken))
    assert len(read_rows(tmp_path / "ray.parquet")) == len(good)


def test_ray_refuses_tar_shards(ray_instance, tmp_path: Path, batch_model: Path) -> None:
    shard = tmp_path / "s.tar"
    shard.write_bytes(b"")
    with pytest.raises(ConfigError, match="tar shards are read by the local engine"):
        run([shard], out=tmp_path / "o.jsonl", model=batch_model, engine="ray", **OPTS)


def test_without_ray_the_message_names_the_pip_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                        batch_model: Path, image_set) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(BackendUnavailable, match=r"pip install 'vggedge\[ray\]'"):
        run(image_set[1][:1], out=tmp_path / "o.jsonl", model=batch_model, engine="ray", **OPTS)


def test_staged_blocks_of_a_killed_ray_run_are_collected_once(tmp_path: Path) -> None:
    """Whole Parquet files staged by Ray are moved into the output; a half-written one is dropped (redone)."""
    pa = pytest.importorskip("pyarrow", reason="needs pyarrow (pip install 'vggedge[batch]')")
    import pyarrow.parquet as pq

    from vggedge.apps.batch.ray_engine import collect_staged, staged_schema
    from vggedge.apps.batch.writers import open_errors, open_writer

    staged = tmp_path / "out.jsonl.ray"
    staged.mkdir()
    row = {"path": "/a.jpg", "top_k_index": [1], "top_k_label": ["x"], "top_k_score": [0.5], "model": "m",
           "precision": "fp32", "backend": "ort-cpu", "decode_ms": 1.0, "infer_ms": 2.0, "error": None,
           "kind": None, "worker": "h:1", "worker_rss_mb": 300.0, "decode_worker": "h:2", "decode_rss_mb": 90.0}
    bad = {**{k: None for k in row}, "path": "/b.jpg", "error": "file is empty (0 bytes)", "kind": "empty",
           "worker": "h:1", "worker_rss_mb": 310.0, "decode_worker": "h:2", "decode_rss_mb": 95.0}
    pq.write_table(pa.Table.from_pylist([row, bad], schema=staged_schema(False)), staged / "b1.parquet")
    (staged / "b2.parquet").write_bytes(b"PAR1 half")
    rss: dict[str, float] = {}
    with open_writer(tmp_path / "out.jsonl", False) as writer, open_errors(tmp_path / "out.jsonl") as errors:
        assert collect_staged(staged, writer, errors, rss) == (1, 1)
    assert list(staged.iterdir()) == []
    assert read_rows(tmp_path / "out.jsonl") == [{k: row[k] for k in writer.fields}]
    assert read_rows(errors_path_for(tmp_path / "out.jsonl")) == [
        {"path": "/b.jpg", "kind": "empty", "reason": "file is empty (0 bytes)"}]
    assert rss == {"h:1": 310.0, "h:2": 95.0}
