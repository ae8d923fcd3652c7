"""Choose the CPU variant by measuring it, once per machine and model, and remember the winner.

The fastest variant depends on the CPU (the OpenVINO plugin wins by 3-5x on
Intel CPUs with AMX and gains nothing elsewhere), so a fixed order is wrong
somewhere. So does the best call size: on a 2-core Zen 3 every engine ran a batch
of 8 at half the per-image rate of single images (the activations no longer fit
the cache), on Intel AMX the opposite held (issue 22). :func:`tune` times each
runnable variant (its file exists beside the FP32 model) for a few seconds at the
app's batch size and at smaller calls (:func:`micro_sizes`); a variant's time for
the batch is its best ``calls x seconds per call``, and the winner's best call
size becomes the runner's ``micro_batch`` (runtime/base.py), invisible to the
app. The table is cached under
``<cache>/tune/`` (``VGGEDGE_CACHE`` / ``XDG_CACHE_HOME``, see vggedge/env.py),
keyed by :class:`TuneKey`: model sha256, CPU model name, core count, package
versions, batch size and the set of runnable variants. Any change re-tunes.
``VGGEDGE_TUNE=0`` switches it off (feature-detection order); an explicit
precision or ``VGGEDGE_CPU_VARIANT`` always wins (runtime/cpu/planner.py).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ... import env, machine
from ...catalogue import file_sha256
from ...errors import VggEdgeError
from ..base import RunnerOptions
from . import features as _features
from .features import CpuFeatures
from .variants import CpuVariant, current_variant, runner_for, variants_for

log = logging.getLogger(__name__)
PACKAGES = ("vggedge", "onnxruntime", "onnxruntime-ep-openvino", "onnxruntime-openvino", "openvino")
CACHE_VERSION = 2
#: timing rounds, interleaved over the variants; each call size keeps its fastest round
ROUNDS = 2
#: seconds per batch of one variant: (variant, fp32 model, runner options, seconds) -> median
Timer = Callable[[CpuVariant, Path, RunnerOptions, float], float]


@dataclass(frozen=True)
class TuneKey:
    """Everything a measured winner depends on; any change means a new measurement."""

    model_sha256: str
    cpu: str
    cores: int
    packages: tuple[tuple[str, str], ...]
    batch: int
    variants: tuple[str, ...]
    threads: int | None = None  # the user's thread count (None: each variant's tuned default)

    def digest(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:24]


@dataclass
class TuneResult:
    """Seconds per batch of each variant (at its best call size), the variants that failed (with why), the
    winner, and each variant's median seconds per call at every call size measured."""

    key: TuneKey
    seconds_per_batch: dict[str, float]
    failed: dict[str, str] = field(default_factory=dict)
    winner: str = ""
    measured_at: str = ""
    cached: bool = False
    #: variant -> {rows per call: median seconds per call}
    per_call: dict[str, dict[int, float]] = field(default_factory=dict)

    def micro_batch(self, variant: str | None = None) -> int:
        """The rows per call that ran the batch fastest on ``variant`` (default: the winner)."""
        calls = self.per_call.get(variant or self.winner)
        if not calls:
            return self.key.batch
        return min(calls, key=lambda m: (calls[m] * -(-self.key.batch // m), -m))  # a tie: fewer calls

    def to_json(self) -> dict:
        data = asdict(self)
        data.pop("cached")
        return {"version": CACHE_VERSION, **data}

    @classmethod
    def from_json(cls, data: dict) -> "TuneResult":
        """Validate a cache entry; raises ValueError/KeyError/TypeError when it is not one."""
        if data.get("version") != CACHE_VERSION:
            raise ValueError(f"cache version {data.get('version')!r}, expected {CACHE_VERSION}")
        k = data["key"]
        key = TuneKey(str(k["model_sha256"]), str(k["cpu"]), int(k["cores"]),
                      tuple((str(a), str(b)) for a, b in k["packages"]), int(k["batch"]),
                      tuple(str(v) for v in k["variants"]), None if k["threads"] is None else int(k["threads"]))
        times = {str(name): float(s) for name, s in data["seconds_per_batch"].items()}
        winner = str(data["winner"])
        if winner not in times:
            raise ValueError(f"winner {winner!r} has no timing")
        per_call = {str(v): {int(m): float(t) for m, t in calls.items()} for v, calls in data["per_call"].items()}
        return cls(key, times, {str(a): str(b) for a, b in data.get("failed", {}).items()}, winner,
                   str(data.get("measured_at", "")), per_call=per_call)


def package_versions() -> tuple[tuple[str, str], ...]:
    """Installed versions of the packages whose change can change the winner ("-" when absent)."""
    return tuple((name, version or "-") for name, version in machine.package_versions(PACKAGES).items())


def runnable(fp32: str | Path, features: CpuFeatures) -> list[CpuVariant]:
    """The variants this machine offers whose file exists beside the FP32 model."""
    return [v for v in variants_for(features) if current_variant(fp32, v.model) is not None]


def key_for(fp32: str | Path, batch: int, features: CpuFeatures, variants: list[CpuVariant],
            threads: int | None = None) -> TuneKey:
    """The cache key of a model on this machine at a batch size (and thread count, when the user sets one)."""
    return TuneKey(file_sha256(fp32), machine.cpu_name(), features.cores, package_versions(), batch,
                   tuple(v.key for v in variants), threads)


def cache_path(key: TuneKey) -> Path:
    """Where a key's table lives."""
    return env.cache_dir() / "tune" / f"{key.digest()}.json"


def load(key: TuneKey) -> TuneResult | None:
    """The cached table for ``key``; a corrupt entry is reported, moved aside and ignored."""
    path = cache_path(key)
    if not path.is_file():
        return None
    try:
        result = TuneResult.from_json(json.loads(path.read_text()))
        if result.key != key:
            raise ValueError("its key does not match its file name")
    except (ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
        aside = path.with_suffix(".bad")
        log.warning("tuning cache entry %s is unusable (%s); moved to %s, re-tuning", path, exc, aside.name)
        os.replace(path, aside)
        return None
    result.cached = True
    return result


def save(result: TuneResult) -> Path:
    """Write a table atomically (temporary name, then rename)."""
    path = cache_path(result.key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(result.to_json(), indent=1))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def micro_sizes(batch: int) -> list[int]:
    """The call sizes timed for a batch: single images, half the batch (from 4 up) and the whole batch."""
    return sorted({1, batch} | ({batch // 2} if batch >= 4 else set()))


def time_variant(variant: CpuVariant, fp32: Path, options: RunnerOptions, seconds: float) -> float:
    """Median seconds per batch of ``options.max_batch`` (zeros) on one variant, after a warm-up."""
    with runner_for(variant, fp32, options) as runner:
        feed = {}
        for name, meta in runner.input_metadata().items():
            shape = tuple(options.max_batch if d is None else d for d in meta.shape)
            feed[name] = np.zeros(shape, meta.dtype)
        runner.infer(feed)
        samples, start = [], time.perf_counter()
        while len(samples) < 3 or time.perf_counter() - start < seconds:
            t0 = time.perf_counter()
            runner.infer(feed)
            samples.append(time.perf_counter() - t0)
    return float(np.median(samples))


def tune(fp32: str | Path, options: RunnerOptions | None = None, *, features: CpuFeatures | None = None,
         seconds: float = 2.0, force: bool = False, timer: Timer | None = None) -> TuneResult:
    """The measured table for a model at ``options.max_batch``: from the cache, else timed now (by
    ``timer``, default :func:`time_variant`) and cached."""
    timer = timer or time_variant
    fp32, options = Path(fp32), options or RunnerOptions()
    features = features or _features.cpu_features()
    variants = runnable(fp32, features)
    if not variants:
        raise VggEdgeError(f"{fp32}: no CPU variant's file exists here (the FP32 model itself is missing?)")
    key = key_for(fp32, options.max_batch, features, variants, options.threads)
    cached = None if force else load(key)
    if cached is not None:
        return cached
    log.info("tuning the CPU path for %s at batch %d: timing %s for about %.0f s each (once per machine and "
             "model; VGGEDGE_TUNE=0 turns this off)", fp32.name, options.max_batch,
             ", ".join(v.key for v in variants), seconds)
    times, failed, per_call = {}, {}, {}
    batch = options.max_batch
    for _ in range(ROUNDS):  # round-robin: a busy moment on a shared machine hurts one round, not one variant
        for variant in variants:
            if variant.key in failed:
                continue
            try:
                calls = {m: timer(variant, fp32, dataclasses.replace(options, max_batch=m, micro_batch=None),
                                  seconds / ROUNDS) for m in micro_sizes(batch)}
            except VggEdgeError as exc:  # a variant that cannot run here is a reported skip, not a crash
                failed[variant.key] = str(exc)
                per_call.pop(variant.key, None)
                continue
            best = per_call.setdefault(variant.key, {})
            for m, t in calls.items():
                best[m] = min(best.get(m, t), t)
    for name, calls in per_call.items():
        times[name] = min(t * -(-batch // m) for m, t in calls.items())
    if not times:
        raise VggEdgeError(f"{fp32}: no CPU variant ran: " + "; ".join(f"{k}: {r}" for k, r in failed.items()))
    winner = min(times, key=times.get)
    result = TuneResult(key, times, failed, winner, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                        per_call=per_call)
    try:
        save(result)
    except OSError as exc:  # an unwritable cache costs a re-measurement next time, not this run
        log.warning("could not cache the tuning result in %s (%s); set VGGEDGE_CACHE to a writable folder",
                    cache_path(key).parent, exc)
    return result


def tuned_variant(fp32: str | Path, options: RunnerOptions, features: CpuFeatures) -> CpuVariant | None:
    """The measured winner for ``precision="auto"`` (tuning now if needed), or None when nothing can be timed."""
    if not Path(fp32).is_file():
        return None
    result = tune(fp32, options, features=features)
    chosen = next((v for v in variants_for(features) if v.key == result.winner), None)
    micro = result.micro_batch()
    if chosen is not None and micro < result.key.batch:
        log.info("CPU variant %s runs batches of %d as calls of %d rows (measured faster per image here)",
                 chosen.key, result.key.batch, micro)
        chosen = dataclasses.replace(chosen, micro_batch=micro)
    return chosen


def table_for(fp32: str | Path) -> list[TuneResult]:
    """Every cached table of this model (any batch, CPU or package set), newest first."""
    folder = env.cache_dir() / "tune"
    if not folder.is_dir() or not Path(fp32).is_file():
        return []
    sha, found = file_sha256(fp32), []
    for path in folder.glob("*.json"):
        try:
            result = TuneResult.from_json(json.loads(path.read_text()))
        except (ValueError, KeyError, TypeError, AttributeError, OSError):
            continue
        if result.key.model_sha256 == sha:
            result.cached = True
            found.append(result)
    return sorted(found, key=lambda r: r.measured_at, reverse=True)


def is_current(result: TuneResult, fp32: str | Path, features: CpuFeatures) -> bool:
    """Whether ``auto`` would use this table now (same CPU, packages and runnable variants), not a superseded one."""
    k = result.key
    return k == key_for(fp32, k.batch, features, runnable(fp32, features), k.threads)


def format_table(result: TuneResult, *, current: bool = True) -> list[str]:
    """Lines describing one table: each variant's time per batch and images/s, the winner marked.

    ``current=False`` marks a table ``auto`` no longer uses (another CPU, package set or set of files).
    """
    k = result.key
    state = "cached" if result.cached else "measured now"
    if not current:
        state = "superseded: measured with another CPU, package set or set of variant files; not used"
    lines = [f"{k.cpu}, {k.cores} cores, batch {k.batch} ({state}, {result.measured_at}):"]
    width = max([10, *map(len, result.seconds_per_batch), *map(len, result.failed)])
    for name, s in sorted(result.seconds_per_batch.items(), key=lambda item: item[1]):
        mark = "  <- chosen" if name == result.winner else ""
        micro = result.micro_batch(name)
        calls = result.per_call.get(name, {})
        how = f" as calls of {micro}" if micro < k.batch else ""
        sizes = ", ".join(f"{m}: {m / t:.1f}" for m, t in sorted(calls.items()) if t > 0)
        lines.append(f"  {name:<{width}} {1000 * s:9.1f} ms/batch {k.batch / s:8.1f} img/s{how}{mark}"
                     + (f"   (img/s by call size {sizes})" if len(calls) > 1 else ""))
    lines += [f"  {name:<{width}} not run: {reason}" for name, reason in result.failed.items()]
    return lines


__all__ = ["TuneKey", "TuneResult", "tune", "tuned_variant", "table_for", "format_table", "is_current", "time_variant"]
