"""The Ray engine on a real local Ray instance (2 CPUs and one logical GPU, started once for this module)
against the local engine, and the pipeline each decoder choice builds."""
from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import numpy as np
import pytest
from batch_images import MAX_PIXELS

from vggedge.apps.batch.rows import TIMING_COLUMNS
from vggedge.apps.batch.readers import without
from vggedge.batch import errors_path_for, read_rows, run
from vggedge.errors import EXIT_PARTIAL, BackendUnavailable, ConfigError
from vggedge.spec import ModelSpec

OPTS = dict(batch_size=4, max_pixels=MAX_PIXELS, progress=False)


@pytest.fixture(scope="module")
def ray_instance() -> Iterator[object]:
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'vggedge[ray]'); "
                                            "the Ray engine tests need a real Ray instance")
    pytest.importorskip("ray.data", reason="Ray Data is not installed (pip install 'ray[data]')")
    # one logical GPU (no device behind it): the GPU route is planned; its actor finds a CPU runner and decodes
    # on its CPU, so the route's rows are checked here and its GPU decoding in tests/runtime/gpu/test_decode.py
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def comparable(rows: list[dict], approx: bool = False) -> list[dict]:
    """Rows without timing, sorted by path; with ``approx`` the scores compare with a float tolerance."""
    rows = without(rows, TIMING_COLUMNS)
    for row in rows if approx else ():
        row["top_k_score"] = pytest.approx(row["top_k_score"], rel=1e-5, abs=1e-7)
    return sorted(rows, key=lambda r: r["path"])


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory, batch_model: Path, image_set) -> Path:
    out = tmp_path_factory.mktemp("ray-local") / "local.jsonl"
    run([image_set[0]], out=out, model=batch_model, **OPTS)
    return out


def test_ray_rows_equal_the_local_engines(ray_instance, tmp_path: Path, batch_model: Path, image_set,
                                          local_run: Path) -> None:
    folder, good, broken = image_set
    summary = run([folder], out=tmp_path / "ray.parquet", model=batch_model, engine="ray", decoder="cpu", **OPTS)
    assert (summary.engine, summary.images, summary.failed) == ("ray", len(good), len(broken))
    assert (summary.decoder, summary.decoder_reason) == ("cpu", "asked for the CPU: Ray CPU tasks decode and "
                                                                "preprocess")
    assert summary.exit_status == EXIT_PARTIAL and (summary.backend, summary.precision) == ("ort-cpu", "fp32")
    ray_rows = read_rows(tmp_path / "ray.parquet")
    assert len(ray_rows) == len(good)
    assert comparable(ray_rows) == comparable(read_rows(local_run), approx=True)
    errors = read_rows(errors_path_for(tmp_path / "ray.parquet"))
    assert {e["path"]: e["kind"] for e in errors} == broken
    assert sorted(errors, key=lambda e: e["path"]) == sorted(read_rows(errors_path_for(local_run)),
                                                            key=lambda e: e["path"])
    # decoding runs in CPU tasks apart from the inference actor: at least two worker processes report memory
    assert len(summary.worker_peak_rss_mb) >= 2 and all(mb > 0 for mb in summary.worker_peak_rss_mb.values())
    assert not (tmp_path / "ray.parquet.ray").exists() and not (tmp_path / "ray.parquet.parts").exists()

    again = run([folder], out=tmp_path / "ray.parquet", model=batch_model, engine="ray", resume=True, **OPTS)
    assert (again.images, again.failed, again.skipped) == (0, 0, len(good) + len(broken))
    assert len(read_rows(tmp_path / "ray.parquet")) == len(good)


def test_the_gpu_route_gives_the_same_rows(ray_instance, tmp_path: Path, batch_model: Path, image_set,
                                          local_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """GPU actors (here a logical GPU) receive checked encoded files and decode them themselves."""
    monkeypatch.delenv("VGGEDGE_DECODER", raising=False)
    folder, good, broken = image_set
    summary = run([folder], out=tmp_path / "ray.jsonl", model=batch_model, engine="ray", **OPTS)
    assert (summary.images, summary.failed, summary.decoder) == (len(good), len(broken), "cpu")
    assert summary.decoder_reason.startswith("the inference actors (1 GPU each) decode the checked files; an actor: "
                                             "the backend (ort-cpu) runs on the CPU")
    assert comparable(read_rows(tmp_path / "ray.jsonl")) == comparable(read_rows(local_run), approx=True)
    assert sorted(read_rows(errors_path_for(tmp_path / "ray.jsonl")), key=lambda e: e["path"]) == sorted(
        read_rows(errors_path_for(local_run)), key=lambda e: e["path"])
    assert len(summary.worker_peak_rss_mb) >= 2  # the checking tasks and the actor


def test_an_actor_that_cannot_load_the_model_is_one_error_naming_it(ray_instance, tmp_path: Path,
                                                                   batch_model: Path, image_set) -> None:
    """The driver planned a good model, but what the actors load is broken (as on a node whose copy is): the
    worker's own ModelError comes back as that class with its message, not Ray's ActorDiedError traceback."""
    from vggedge.apps.batch import BatchOptions
    from vggedge.apps.batch.ray_engine import run_ray
    from vggedge.errors import ModelError
    from vggedge.runtime.base import RunnerOptions
    from vggedge.runtime.select import plan_selection

    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx file")
    plan = plan_selection(batch_model, "ort-cpu", options=RunnerOptions(max_batch=4))
    with pytest.raises(ModelError) as caught:
        run_ray(image_set[1][:4], tmp_path / "o.jsonl", broken, plan, BatchOptions(decoder="cpu", **OPTS))
    message = str(caught.value)
    assert "broken.onnx" in message and message.startswith("a Ray worker stopped the job: ")
    assert "\n" not in message and "ActorDiedError" not in message and "--resume" in message


def test_other_ray_failures_are_one_line_and_bugs_keep_their_traceback(tmp_path: Path) -> None:
    from vggedge.apps.batch.ray_engine import ray_failure
    from vggedge.errors import VggEdgeError

    ray_error = type("ObjectStoreFullError", (Exception,), {"__module__": "ray.exceptions"})
    failure = ray_failure(ray_error("\x1b[36mobject store is full\x1b[39m\n  details"), tmp_path / "o.ray")
    assert type(failure) is VggEdgeError
    assert str(failure).startswith("the Ray job failed (ObjectStoreFullError: object store is full); blocks")
    bug = KeyError("x")
    assert ray_failure(bug, tmp_path / "o.ray") is bug


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


def test_what_an_actor_stages_on_disk_holds_no_credentials(tmp_path: Path, batch_model: Path) -> None:
    """A URL that failed is staged (Parquet in ``<out>.ray/``, kept if the run is killed) under its row key,
    with the reason redacted: the password never reaches the disk."""
    pytest.importorskip("pyarrow", reason="needs pyarrow (pip install 'vggedge[batch]')")
    from vggedge.apps.batch.ray_actor import RayInfer

    url = "http://user:s3cret@127.0.0.1:9/a.jpg"
    actor = RayInfer(str(batch_model), "ort-cpu", "as-given", 2, 3, False, 1)
    table = actor({"path": np.array([url]), "error": np.array([f"{url}: HTTP 401 Unauthorized"]),
                   "kind": np.array(["http"]), "decode_worker": np.array(["h:2"]), "decode_rss_mb": np.array([90.0])})
    [row] = table.to_pylist()
    assert row["path"] == "http://user:***@127.0.0.1:9/a.jpg"
    assert "s3cret" not in row["error"] and row["error"].endswith("HTTP 401 Unauthorized")
    assert "s3cret" not in str(table.to_pydict())


def test_an_actors_concurrent_calls_each_get_their_own_rows(tmp_path: Path, batch_model: Path, image_set) -> None:
    """Ray runs an actor's calls at once (``max_concurrent_calls_per_actor``), all through one open run (the
    actor's RunFeed): each call's rows are its own, equal to the same batches called one at a time."""
    pytest.importorskip("pyarrow", reason="needs pyarrow (pip install 'vggedge[batch]')")
    import threading

    from vggedge.apps.batch.decode import Limits
    from vggedge.apps.batch.ray_actor import RayInfer
    from vggedge.apps.batch.ray_tasks import decode_batch, prepare_batch, ragged

    _, good, _ = image_set
    paths = (good * 3)[:9]
    actor = RayInfer(str(batch_model), "ort-cpu", "as-given", 4, 3, False, 1)
    batches = []
    for part in (paths[:4], paths[4:5], paths[5:9]):
        raw = {"path": np.array(part, dtype=object),
               "bytes": ragged([Path(p).read_bytes() for p in part])}
        batches.append(prepare_batch(decode_batch(raw, Limits(max_pixels=MAX_PIXELS)), actor.spec))
    alone = [actor(b).to_pylist() for b in batches]
    together: dict[int, list] = {}
    threads = [threading.Thread(target=lambda i=i, b=b: together.setdefault(i, actor(b).to_pylist()), daemon=True)
               for i, b in enumerate(batches)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    actor.close()
    assert not actor.runner.active and sorted(together) == [0, 1, 2]
    for i, rows in together.items():
        assert [r["path"] for r in rows] == [r["path"] for r in alone[i]]
        assert comparable(rows, approx=True) == comparable(alone[i])


class FakeDataset:
    """Records the Ray Data plan: (stage name, keyword arguments) per stage."""

    def __init__(self, stages: list[tuple[str, dict]]) -> None:
        self.stages = stages

    def map_batches(self, fn, **kwargs) -> "FakeDataset":
        return FakeDataset([*self.stages, (fn.__name__, kwargs)])


def fake_ray(gpus: int) -> SimpleNamespace:
    ctx = SimpleNamespace(enable_progress_bars=None, execution_options=SimpleNamespace(resource_limits=None))
    data = SimpleNamespace(DataContext=SimpleNamespace(get_current=lambda: ctx),
                           ExecutionResources=SimpleNamespace(for_limits=lambda **kw: kw),
                           ActorPoolStrategy=lambda **kw: kw,
                           read_binary_files=lambda paths, include_paths: FakeDataset([("read", {})]))
    return SimpleNamespace(data=data, cluster_resources=lambda: {"CPU": 8.0, **({"GPU": gpus} if gpus else {})},
                           is_initialized=lambda: True)


def plan_of(tmp_path: Path, gpus: int, **options) -> tuple[list[str], dict]:
    """The stages the Ray engine builds for this cluster and these options, and the actor stage's arguments."""
    from vggedge.apps.batch import BatchOptions
    from vggedge.apps.batch.ray_engine import _pipeline, actor_resources, decode_route

    model = tmp_path / "m.onnx"
    model.write_bytes(b"onnx")
    ray, opts = fake_ray(gpus), BatchOptions(**options)
    resources = actor_resources(ray, opts)
    route, _ = decode_route(opts.decoder, resources[0], opts.backend)
    ds = _pipeline(ray, ["a.jpg"], model, ModelSpec(), opts, 4, False, route, resources)
    return [name for name, _ in ds.stages], ds.stages[-1][1]


def test_gpu_actors_decode_unless_the_cpu_is_asked_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VGGEDGE_DECODER", raising=False)
    cpu_route, gpu_route = ["read", "decode_batch", "prepare_batch", "RayInfer"], ["read", "check_batch", "RayInfer"]
    stages, actor = plan_of(tmp_path, 0)
    assert stages == cpu_route and actor["num_gpus"] is None and "decoder" not in actor["fn_constructor_kwargs"]
    stages, actor = plan_of(tmp_path, 2, max_pixels=1000)
    assert stages == gpu_route and actor["num_gpus"] == 1.0 and actor["compute"]["size"] == 2
    assert actor["fn_constructor_kwargs"]["decoder"] == "auto"
    assert actor["fn_constructor_kwargs"]["limits"].max_pixels == 1000  # the actor's CPU fallback keeps the limits
    stages, actor = plan_of(tmp_path, 2, decoder="cpu")
    assert stages == cpu_route and actor["num_gpus"] == 1.0  # the actors still infer on their GPU
    assert plan_of(tmp_path, 2, ray_gpus_per_actor=0)[0] == cpu_route
    assert plan_of(tmp_path, 2, backend="ort-cpu")[0] == cpu_route
    monkeypatch.setenv("VGGEDGE_DECODER", "gpu")  # resolved on the driver: every actor gets the same choice
    stages, actor = plan_of(tmp_path, 1)
    assert stages == gpu_route and actor["fn_constructor_kwargs"]["decoder"] == "gpu"


def test_gpu_decoding_without_gpu_actors_is_one_line_naming_why(tmp_path: Path, batch_model: Path, image_set,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from vggedge.apps.batch import ray_engine

    monkeypatch.delenv("VGGEDGE_DECODER", raising=False)
    with pytest.raises(BackendUnavailable, match=r"^GPU decoding is not possible: the Ray inference actors have "
                                                 r"no GPU \(the cluster has none, or ray_gpus_per_actor=0\)"):
        plan_of(tmp_path, 0, decoder="gpu")
    with pytest.raises(BackendUnavailable, match=r"the backend \(ort-cpu\) runs on the CPU"):
        plan_of(tmp_path, 4, decoder="gpu", backend="ort-cpu")
    monkeypatch.setattr(ray_engine, "ray_module", lambda: fake_ray(0))
    out = tmp_path / "o.jsonl"
    with pytest.raises(BackendUnavailable, match="GPU decoding is not possible"):
        run(image_set[1][:1], out=out, model=batch_model, engine="ray", decoder="gpu", **OPTS)
    assert not out.exists() and not errors_path_for(out).exists()  # refused before any output is opened
