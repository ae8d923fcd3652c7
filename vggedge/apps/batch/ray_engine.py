"""The Ray engine: the same job on Ray Data, on one machine or a cluster (``--engine ray``).

read_binary_files (paths kept) -> decode (CPU tasks) -> preprocess (CPU tasks)
-> inference in a fixed pool of actors, one runner each (``map_batches`` with a
callable class, ``compute=ActorPoolStrategy``, an explicit integer
``batch_size``, ``num_gpus`` per actor when the cluster has GPUs) ->
``write_parquet`` into ``<out>.ray/``. The driver then moves the staged rows
into the output (any format) and the errors file, so resume works as for the
local engine: finished blocks staged by a killed run are collected first.

What is in flight is bounded by Ray Data's object-store limit
(``ray_object_store_mb``) and two tasks per actor, and every row carries the
peak RSS of the processes that decoded and inferred it, reported per worker.
"""
from __future__ import annotations

import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import BackendUnavailable, ConfigError
from ...runtime.base import RunnerOptions
from ...runtime.select import select_runner
from ...runtime.plan import Plan
from ...spec import ModelSpec

from .decode import BadImage, Limits, decode, read_bytes, special_kind
from .inputs import Item, is_tar, is_url
from .rows import RowMaker, error_row
from .summary import BatchSummary, peak_rss_mb
from .writers import arrow_schema, errors_path_for, open_errors, open_writer

INSTALL = "pip install 'vggedge[ray]'"


def ray_module():
    """``ray`` with Ray Data, or BackendUnavailable naming the pip command."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise BackendUnavailable(f"--engine ray needs Ray Data, which is not installed here: {INSTALL}") from None
    return ray


def staging_dir_for(out: Path) -> Path:
    return out.with_name(out.name + ".ray")


def _worker() -> tuple[str, float]:
    return f"{socket.gethostname()}:{os.getpid()}", peak_rss_mb()


def decode_batch(batch: dict[str, np.ndarray], limits: Limits) -> dict[str, Any]:
    """CPU task: encoded bytes -> BGR images (failures keep their row, with the reason)."""
    images, errors, kinds, seconds = [], [], [], []
    for data in batch["bytes"]:
        t0 = time.perf_counter()
        try:
            images.append(decode(read_bytes(Item("", bytes(data)), limits), limits))
            errors.append("")
            kinds.append("")
        except BadImage as exc:
            images.append(np.zeros((1, 1, 3), np.uint8))
            errors.append(str(exc))
            kinds.append(exc.kind)
        seconds.append(time.perf_counter() - t0)
    worker, rss = _worker()
    n = len(images)
    return {"path": batch["path"], "image": _ragged(images), "error": np.array(errors, dtype=object),
            "kind": np.array(kinds, dtype=object), "decode_s": np.array(seconds),
            "decode_worker": np.array([worker] * n, dtype=object), "decode_rss_mb": np.full(n, rss)}


def _ragged(images: list[np.ndarray]) -> np.ndarray:
    out = np.empty(len(images), dtype=object)
    for i, image in enumerate(images):
        out[i] = image
    return out


def prepare_batch(batch: dict[str, np.ndarray], spec: ModelSpec) -> dict[str, Any]:
    """CPU task: BGR images -> the model's input tensors (the one preprocessing path)."""
    from ...preprocess import prepare

    shape = tuple(spec.input_shape[1:])
    tensors = np.zeros((len(batch["path"]), *shape), np.dtype(spec.dtype))
    seconds = np.asarray(batch["decode_s"], dtype=np.float64).copy()
    for i, (image, error) in enumerate(zip(batch["image"], batch["error"])):
        if not error:
            t0 = time.perf_counter()
            prepare(np.asarray(image), spec, out=tensors[i])
            seconds[i] += time.perf_counter() - t0
    worker, rss = _worker()
    rss = np.maximum(np.asarray(batch["decode_rss_mb"], dtype=np.float64), rss)
    result = {k: v for k, v in batch.items() if k not in ("image", "decode_s", "decode_rss_mb")}
    return {**result, "tensor": tensors, "decode_s": seconds, "decode_rss_mb": rss}


class RayInfer:
    """Ray actor: one runner, activated once, over batches of prepared tensors."""

    def __init__(self, model: str, backend: str, precision: str, batch_size: int, top_k: int, features: bool,
                 threads: int | None) -> None:
        selection = select_runner(model, backend, precision=precision,
                                  options=RunnerOptions(max_batch=batch_size, threads=threads))
        self.spec = selection.require_spec()  # of the file this actor runs (an engine's from its sidecar)
        self.runner = selection.runner.activate()
        self.rows = RowMaker(self.spec, Path(model).name, self.spec.precision, selection.backend, top_k, features)
        self.fields = ("path", *[f for f in arrow_schema_fields(self.rows.features) if f != "path"])

    def __call__(self, batch: dict[str, np.ndarray]):
        import pyarrow as pa

        errors = [str(e) for e in batch["error"]]
        good = [i for i, e in enumerate(errors) if not e]
        rows: dict[int, dict[str, Any]] = {}
        if good:
            t0 = time.perf_counter()
            tensors = np.ascontiguousarray(batch["tensor"][good])
            low = self.runner.batch_range()[0]
            if len(good) < low:  # a fixed-batch model: pad with the last image, drop the extra rows after
                tensors = np.concatenate([tensors, np.repeat(tensors[-1:], low - len(good), axis=0)])
            outputs = self.runner.infer({self.spec.input_name: tensors})[self.spec.output_name][:len(good)]
            made = self.rows.rows([str(batch["path"][i]) for i in good], outputs,
                                  [float(batch["decode_s"][i]) for i in good], time.perf_counter() - t0)
            rows = dict(zip(good, made))
        worker, rss = _worker()
        table = []
        for i, path in enumerate(batch["path"]):
            row = rows.get(i) or {"path": str(path)}
            row.update(error=errors[i] or None, kind=str(batch["kind"][i]) or None, worker=worker,
                       worker_rss_mb=rss, decode_worker=str(batch["decode_worker"][i]),
                       decode_rss_mb=float(batch["decode_rss_mb"][i]))
            table.append(row)
        return pa.Table.from_pylist(table, schema=staged_schema(self.rows.features))


def arrow_schema_fields(features: bool) -> tuple[str, ...]:
    from .rows import columns

    return columns(features)


def staged_schema(features: bool):
    """Result columns plus the error and per-worker memory columns Ray stages."""
    import pyarrow as pa

    base = arrow_schema(arrow_schema_fields(features))
    extra = [("error", pa.string()), ("kind", pa.string()), ("worker", pa.string()), ("worker_rss_mb", pa.float64()),
             ("decode_worker", pa.string()), ("decode_rss_mb", pa.float64())]
    return pa.schema(list(base) + [pa.field(n, t) for n, t in extra])


def collect_staged(staged: Path, writer, errors, worker_rss: dict[str, float],
                   stages: dict[str, float] | None = None) -> tuple[int, int]:
    """Move whole staged Parquet files into the output and errors file; returns (rows, failed).

    ``worker_rss`` gathers the peak RSS per worker, ``stages`` the decode and infer seconds of the rows.
    """
    stages = {} if stages is None else stages
    import pyarrow.parquet as pq

    images = failed = 0
    for part in sorted(staged.glob("*.parquet")) if staged.is_dir() else []:
        try:
            table = pq.read_table(part)
        except (OSError, ValueError):  # half-written by a killed run: its images are redone
            part.unlink()
            continue
        rows = table.to_pylist()
        good = [{f: r[f] for f in writer.fields} for r in rows if not r["error"]]
        bad = [error_row(r["path"], r["kind"], r["error"]) for r in rows if r["error"]]
        writer.write(good)
        errors.write(bad)
        for r in rows:
            for who, mb in ((r["worker"], r["worker_rss_mb"]), (r["decode_worker"], r["decode_rss_mb"])):
                worker_rss[who] = max(worker_rss.get(who, 0.0), mb or 0.0)
        for stage in ("decode", "infer"):
            stages[stage] = stages.get(stage, 0.0) + sum(r[f"{stage}_ms"] or 0.0 for r in rows) / 1000.0
        images, failed = images + len(good), failed + len(bad)
        part.unlink()
    return images, failed


def precheck(entries: list[str], limits: Limits) -> tuple[list[str], list[dict[str, Any]]]:
    """Local files Ray can read, and error rows for those it cannot (missing, unreadable, too large)."""
    ok, bad = [], []
    for entry in entries:
        if is_tar(entry):
            raise ConfigError(f"{entry}: tar shards are read by the local engine; with --engine ray, "
                              "extract them or pass the image files")
        if is_url(entry):
            ok.append(entry)
            continue
        try:
            info = os.stat(entry)
            size = info.st_size
            if special_kind(info.st_mode):
                bad.append(error_row(entry, "unreadable", f"not a regular file ({special_kind(info.st_mode)}); "
                                                          "not opened"))
                continue
            with open(entry, "rb"):
                pass
        except OSError as exc:
            bad.append(error_row(entry, "unreadable", f"cannot read ({exc.strerror or exc})"))
            continue
        if size > limits.max_bytes:
            bad.append(error_row(entry, "too-large", f"file is {size} bytes; the limit is {limits.max_bytes}"))
        else:
            ok.append(entry)
    return ok, bad


def run_ray(entries: list[str], out: Path, model: Path, plan: Plan, opts) -> BatchSummary:
    """Run the job on Ray Data (a local instance unless ``opts.address`` names a cluster).

    The driver's ``plan`` gives the spec the decode tasks preprocess with and the
    batch; each actor plans again where it runs (its GPU may differ from the driver's).
    """
    ray = ray_module()
    spec = plan.require_spec()
    features = opts.features or spec.output_kind == "features"
    staged = staging_dir_for(out)
    if staged.exists() and not opts.resume:
        if not opts.overwrite:
            raise ConfigError(f"{staged} holds a previous Ray run; pass --resume to continue it or --overwrite")
        shutil.rmtree(staged)
    batch_size = plan.options.max_batch  # a fixed-batch model takes exactly its batch
    worker_rss: dict[str, float] = {}
    stages: dict[str, float] = {}
    started = not ray.is_initialized()
    if started:
        ray.init(address=opts.address, include_dashboard=False, log_to_driver=False)
    t0 = time.perf_counter()
    try:
        with open_writer(out, features, resume=opts.resume, overwrite=opts.overwrite) as writer, \
                open_errors(out, resume=opts.resume, overwrite=opts.overwrite) as errors:
            images, failed = collect_staged(staged, writer, errors, worker_rss, stages)
            done = (writer.done() | errors.done()) if opts.resume else set()
            todo, bad = precheck([e for e in entries if e not in done], opts.limits)
            errors.write(bad)
            failed += len(bad)
            if todo:
                _pipeline(ray, todo, model, spec, opts, batch_size, features).write_parquet(str(staged))
                more = collect_staged(staged, writer, errors, worker_rss, stages)
                images, failed = images + more[0], failed + more[1]
            writer.finish()
            errors.finish()
            shutil.rmtree(staged, ignore_errors=True)
            backend, precision = _first_meta(out, writer.fields, opts.backend, spec.precision)
    finally:
        if started:
            ray.shutdown()
    skipped = sum(1 for e in entries if e in done)
    return BatchSummary(str(out), str(errors_path_for(out)), "ray", backend, precision, images=images,
                        failed=failed, skipped=skipped, seconds=time.perf_counter() - t0, stages=stages,
                        peak_rss_mb=peak_rss_mb(), worker_peak_rss_mb=worker_rss)


def _pipeline(ray, todo: list[str], model: Path, spec: ModelSpec, opts, batch_size: int, features: bool):
    """The Ray Data plan (lazy): read -> decode -> preprocess -> actors."""
    data = ray.data
    ctx = data.DataContext.get_current()
    ctx.enable_progress_bars = sys.stderr.isatty() if opts.progress is None else bool(opts.progress)
    ctx.execution_options.resource_limits = data.ExecutionResources.for_limits(
        object_store_memory=opts.ray_object_store_mb * 2**20)
    gpus = ray.cluster_resources().get("GPU", 0)
    per_actor = opts.ray_gpus_per_actor if opts.ray_gpus_per_actor is not None else (1.0 if gpus else 0.0)
    actors = opts.ray_actors or (max(1, int(gpus // per_actor)) if per_actor else 1)
    ds = data.read_binary_files(todo, include_paths=True)
    ds = ds.map_batches(decode_batch, batch_size=batch_size, fn_kwargs={"limits": opts.limits},
                        batch_format="numpy", num_cpus=1)
    ds = ds.map_batches(prepare_batch, batch_size=batch_size, fn_kwargs={"spec": spec}, batch_format="numpy",
                        num_cpus=1)  # fused with decoding into one task: full-size pixels never hit the store
    return ds.map_batches(
        RayInfer, batch_size=batch_size, batch_format="numpy", num_gpus=per_actor or None, num_cpus=1,
        memory=actor_memory(model),  # placed where the model fits; also keeps decoding out of the actors
        compute=data.ActorPoolStrategy(size=actors, max_tasks_in_flight_per_actor=2),
        fn_constructor_kwargs={"model": str(model.resolve()), "backend": opts.backend, "precision": opts.precision,
                               "batch_size": batch_size, "top_k": opts.top_k, "features": features,
                               "threads": opts.threads})


def actor_memory(model: Path) -> int:
    """Bytes of memory an inference actor reserves: the weights twice (file + session) and some headroom.

    Declaring it lets Ray place actors where the model fits, and (since the decode
    tasks declare none) stops Ray Data from fusing decoding into the actors.
    """
    return 2 * model.stat().st_size + 256 * 2**20


def _first_meta(out: Path, fields: tuple[str, ...], backend: str, precision: str) -> tuple[str, str]:
    """Backend and precision the actors reported (from the first row written), else what was asked."""
    from .writers import iter_rows

    try:
        first = next(iter_rows(out), None)
    except (OSError, ValueError):
        first = None
    if first and "backend" in first:
        return str(first["backend"]), str(first["precision"])
    return backend, precision
