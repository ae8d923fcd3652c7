"""The Ray engine: the same job on Ray Data, on one machine or a cluster (``--engine ray``).

read_binary_files (paths kept) -> CPU tasks -> inference in a fixed pool of
actors, one runner each (``map_batches`` with a callable class,
``compute=ActorPoolStrategy``, an explicit integer ``batch_size``, ``num_gpus``
per actor when the cluster has GPUs) -> ``write_parquet`` into ``<out>.ray/``.
The driver then moves the staged rows into the output (any format) and the
errors file, so resume works as for the local engine: finished blocks staged by
a killed run are collected first.

Where images decode (:func:`decode_route`): with GPU actors and a decoder other
than "cpu", the CPU tasks only read and check the files and the actors decode
them on their GPU (:mod:`.ray_actor`); otherwise the CPU tasks decode and
preprocess (:mod:`.ray_tasks`) and the actors receive tensors.

What is in flight is bounded by Ray Data's object-store limit
(``ray_object_store_mb``) and :data:`ACTOR_CALLS` calls per actor, and every row carries the
peak RSS of the processes that decoded and inferred it, reported per worker.
"""
from __future__ import annotations

import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from ...env import decoder_wanted
from ...errors import BackendUnavailable, ConfigError
from ...runtime.plan import Plan
from ...spec import ModelSpec

from .decode import Limits, special_kind
from .inputs import is_tar, is_url
from .ray_actor import RayInfer, staged_schema
from .ray_tasks import check_batch, decode_batch, prepare_batch
from .rows import error_row
from .summary import BatchSummary, peak_rss_mb
from .writers import errors_path_for, open_errors, open_writer

__all__ = ["collect_staged", "decode_route", "precheck", "ray_module", "run_ray", "staged_schema"]
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


def collect_staged(staged: Path, writer, errors, worker_rss: dict[str, float],
                   stages: dict[str, float] | None = None,
                   decoders: dict[str, set[str]] | None = None) -> tuple[int, int]:
    """Move whole staged Parquet files into the output and errors file; returns (rows, failed).

    ``worker_rss`` gathers the peak RSS per worker, ``stages`` the decode and infer seconds of the rows,
    ``decoders`` the decoder that decoded them ("gpu" or "cpu") with the actors' reasons.
    """
    stages = {} if stages is None else stages
    decoders = {} if decoders is None else decoders
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
            if r.get("decoder"):  # absent from blocks staged before decoders were recorded
                decoders.setdefault(r["decoder"], set()).update([r["decoder_reason"]] if r.get("decoder_reason")
                                                                else [])
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


def actor_resources(ray: Any, opts) -> tuple[float, int]:
    """(GPUs per inference actor, number of actors): ``ray_gpus_per_actor``, else one GPU each when the
    cluster has GPUs; ``ray_actors``, else one per GPU (or 1 without GPUs)."""
    gpus = ray.cluster_resources().get("GPU", 0)
    per_actor = opts.ray_gpus_per_actor if opts.ray_gpus_per_actor is not None else (1.0 if gpus else 0.0)
    return per_actor, opts.ray_actors or (max(1, int(gpus // per_actor)) if per_actor else 1)


def decode_route(want: str | None, gpus_per_actor: float, backend: str = "auto") -> tuple[str, str]:
    """Where a Ray job decodes, and why: "gpu" (CPU tasks only read and check the files; the inference actors
    decode them on their GPU) or "cpu" (CPU tasks decode and preprocess; the actors get tensors).

    ``want`` as everywhere (None: ``VGGEDGE_DECODER``, else auto). "gpu" where the actors
    cannot have a GPU runner is a BackendUnavailable naming why. An actor that finds no
    GPU decoder where it runs (nvImageCodec missing) decodes on its CPU under "auto".
    """
    wanted = decoder_wanted(want)
    if wanted == "cpu":
        return "cpu", "asked for the CPU: Ray CPU tasks decode and preprocess"
    problem = None
    if not gpus_per_actor:
        problem = "the Ray inference actors have no GPU (the cluster has none, or ray_gpus_per_actor=0)"
    elif backend == "ort-cpu":
        problem = "the backend (ort-cpu) runs on the CPU"
    if problem is None:
        return "gpu", f"the inference actors ({gpus_per_actor:g} GPU each) decode the checked files"
    if wanted == "gpu":
        raise BackendUnavailable(f"GPU decoding is not possible: {problem} (decoder 'gpu' was asked for: "
                                 "choose auto or cpu)")
    return "cpu", f"{problem}: Ray CPU tasks decode and preprocess"


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
    decoders: dict[str, set[str]] = {}
    started = not ray.is_initialized()
    if started:
        ray.init(address=opts.address, include_dashboard=False, log_to_driver=False)
    t0 = time.perf_counter()
    try:
        resources = actor_resources(ray, opts)
        route, why = decode_route(opts.decoder, resources[0], opts.backend)  # before any output is opened
        with open_writer(out, features, resume=opts.resume, overwrite=opts.overwrite) as writer, \
                open_errors(out, resume=opts.resume, overwrite=opts.overwrite) as errors:
            images, failed = collect_staged(staged, writer, errors, worker_rss, stages, decoders)
            done = (writer.done() | errors.done()) if opts.resume else set()
            todo, bad = precheck([e for e in entries if e not in done], opts.limits)
            errors.write(bad)
            failed += len(bad)
            if todo:
                try:
                    _pipeline(ray, todo, model, spec, opts, batch_size, features, route, resources
                              ).write_parquet(str(staged))
                except Exception as exc:  # Ray re-raises what its workers raised as its own types
                    failure = ray_failure(exc, staged)
                    if failure is exc:
                        raise
                    raise failure from exc
                more = collect_staged(staged, writer, errors, worker_rss, stages, decoders)
                images, failed = images + more[0], failed + more[1]
            writer.finish()
            errors.finish()
            shutil.rmtree(staged, ignore_errors=True)
            backend, precision = _first_meta(out, writer.fields, opts.backend, spec.precision)
    finally:
        if started:
            ray.shutdown()
    skipped = sum(1 for e in entries if e in done)
    reasons = sorted(set().union(*decoders.values())) if decoders else []
    return BatchSummary(str(out), str(errors_path_for(out)), "ray", backend, precision, images=images,
                        failed=failed, skipped=skipped, seconds=time.perf_counter() - t0, stages=stages,
                        peak_rss_mb=peak_rss_mb(), worker_peak_rss_mb=worker_rss,
                        decoder="+".join(sorted(decoders)) or route,
                        decoder_reason="; ".join([why, *(f"an actor: {r}" for r in reasons)]))


_WORKER_ERROR = re.compile(r"^vggedge\.errors\.(\w+): (.+)$", re.MULTILINE)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def ray_failure(exc: BaseException, staged: Path) -> BaseException:
    """The error to raise for a Ray run that stopped: a VggEdgeError a worker raised (an actor that could not
    load the model, a backend refused on that node) as the same class with its own one-line message; another
    Ray failure as one VggEdgeError line; anything else (a bug) unchanged, with its traceback.

    Ray keeps only the text of what a worker raised (``ActorDiedError``, ``RayTaskError``), so the vggedge error
    is read back from the traceback text, the last one wins (the innermost)."""
    from ... import errors

    if isinstance(exc, errors.VggEdgeError) and type(exc).__module__ == errors.__name__:
        return exc
    chain, seen = [], exc
    while seen is not None and len(chain) < 8:
        chain.append(_ANSI.sub("", str(seen)))
        seen = seen.__cause__ or seen.__context__
    found = [m for text in chain for m in _WORKER_ERROR.finditer(text)]
    kept = f"blocks already finished are kept in {staged}: --resume continues the job"
    if found:
        name, message = found[-1].group(1), found[-1].group(2).strip()
        cls = getattr(errors, name, None)
        cls = cls if isinstance(cls, type) and issubclass(cls, errors.VggEdgeError) else errors.VggEdgeError
        return cls(f"a Ray worker stopped the job: {message} ({kept})")
    if not type(exc).__module__.startswith("ray."):
        return exc
    first = next((line.strip() for line in chain[0].splitlines() if line.strip()), "no message")
    return errors.VggEdgeError(f"the Ray job failed ({type(exc).__name__}: {first}); {kept}")


def _pipeline(ray, todo: list[str], model: Path, spec: ModelSpec, opts, batch_size: int, features: bool,
              route: str, resources: tuple[float, int]):
    """The Ray Data plan (lazy): read -> (CPU route) decode -> preprocess, or (GPU route) check -> actors."""
    data = ray.data
    ctx = data.DataContext.get_current()
    ctx.enable_progress_bars = sys.stderr.isatty() if opts.progress is None else bool(opts.progress)
    ctx.execution_options.resource_limits = data.ExecutionResources.for_limits(
        object_store_memory=opts.ray_object_store_mb * 2**20)
    per_actor, actors = resources
    kwargs = {"model": str(model.resolve()), "backend": opts.backend, "precision": opts.precision,
              "batch_size": batch_size, "top_k": opts.top_k, "features": features, "threads": opts.threads}
    ds = data.read_binary_files(todo, include_paths=True)
    if route == "gpu":  # encoded bytes travel to the actors, which decode them into the runner's input
        ds = ds.map_batches(check_batch, batch_size=batch_size, fn_kwargs={"limits": opts.limits},
                            batch_format="numpy", num_cpus=1)
        kwargs.update(decoder=decoder_wanted(opts.decoder), limits=opts.limits)  # resolved here, not per node
    else:
        ds = ds.map_batches(decode_batch, batch_size=batch_size, fn_kwargs={"limits": opts.limits},
                            batch_format="numpy", num_cpus=1)
        ds = ds.map_batches(prepare_batch, batch_size=batch_size, fn_kwargs={"spec": spec}, batch_format="numpy",
                            num_cpus=1)  # fused with decoding into one task: full-size pixels never hit the store
    return ds.map_batches(
        RayInfer, batch_size=batch_size, batch_format="numpy", num_gpus=per_actor or None, num_cpus=1,
        memory=actor_memory(model),  # placed where the model fits; also keeps decoding out of the actors
        compute=actor_pool(data, actors), fn_constructor_kwargs=kwargs)


#: calls an inference actor runs at once: one being inferred, one being decoded into the other slot, one queued
ACTOR_CALLS = 3


def actor_pool(data: Any, actors: int) -> Any:
    """The actors' ``ActorPoolStrategy``: ``ACTOR_CALLS`` calls in flight and running at once per actor, so its
    :class:`~vggedge.runtime.feed.RunFeed` overlaps the next batch's decoding with this one's inference.

    A Ray Data without ``enable_true_multi_threading`` runs one call at a time per actor:
    still correct (the feed hands each batch back when no other is waiting), without the overlap.
    """
    try:
        return data.ActorPoolStrategy(size=actors, max_tasks_in_flight_per_actor=ACTOR_CALLS,
                                      max_concurrent_calls_per_actor=ACTOR_CALLS, enable_true_multi_threading=True)
    except TypeError:
        return data.ActorPoolStrategy(size=actors, max_tasks_in_flight_per_actor=2)


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
