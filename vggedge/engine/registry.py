"""What was built for a model, and which engine this machine can run.

``vggedge build`` writes each plan with its ``.engine.json`` sidecar (source ONNX
sha256, precision, batch profile, TensorRT version, GPU) and records it in the
model's engine index (``<model>.engines.json`` beside the FP32 ONNX). Lookups
read the index and the sidecars of plans beside the model and in ``engines/``,
keep those built from one of the model's ONNX variants, and check each against
this machine's TensorRT version and GPU. No match gives the reason, with the
exact rebuild command, so ``--backend trt`` never answers "run vggedge build"
right after a build, and never loads a plan built for another machine. The ONNX
variants, their staleness and the model hash come from vggedge/catalogue.py.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

from ..catalogue import base_model, check_precision_choice, file_sha256, onnx_variants, spec_precision
from ..errors import BackendUnavailable, EngineMismatch, VggEdgeError
from ..paths import ENGINES_DIR
from .identity import SIDECAR_SUFFIX, EngineIdentity, check_identity, rebuild_command, sidecar_path

log = logging.getLogger(__name__)
PathLike = Union[str, Path]
ENGINE_SUFFIXES = (".plan", ".engine")
#: engines tried by ``precision="auto"``, fastest first
ENGINE_AUTO_ORDER = ("int8", "fp16", "fp32")
INDEX_SUFFIX = ".engines.json"


def is_engine(path: PathLike) -> bool:
    """True for a TensorRT plan path (``.plan`` / ``.engine``)."""
    return Path(path).suffix.lower() in ENGINE_SUFFIXES


# --- the engine index beside the model ------------------------------------------------------------------
def index_path(model: PathLike) -> Path:
    """``m.onnx`` (or any variant of it) -> ``m.engines.json``."""
    base = base_model(model)
    return base.with_name(base.stem + INDEX_SUFFIX)


def record_engine(model: PathLike, plan: PathLike) -> Optional[Path]:
    """Add ``plan`` to the model's engine index (atomic write); None with a warning if it cannot be written."""
    index = index_path(model)
    plans = _read_index(index)
    entry = str(Path(plan).resolve())
    if entry not in plans:
        plans.append(entry)
    tmp = index.with_name(f".{index.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps({"engines": plans}, indent=2) + "\n")
        os.replace(tmp, index)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        log.warning("cannot record %s in %s (%s); pass --model %s to use it", plan, index, exc, plan)
        return None
    return index


def _read_index(index: Path) -> list[str]:
    try:
        data = json.loads(index.read_text())
        plans = data.get("engines", []) if isinstance(data, dict) else []
        return [p for p in plans if isinstance(p, str)]
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable engine index %s (%s); it is rewritten by the next build", index, exc)
        return []


@dataclass(frozen=True)
class EngineRecord:
    """A plan on disk and the identity its sidecar records."""

    plan: Path
    identity: EngineIdentity


def _plans_in(folders: Iterable[Path]) -> list[Path]:
    plans: list[Path] = []
    for folder in folders:
        if folder.is_dir():
            plans += sorted(p for p in folder.iterdir() if p.suffix.lower() in ENGINE_SUFFIXES)
    return plans


def engines_for(model: PathLike, folders: Optional[Sequence[PathLike]] = None) -> list[EngineRecord]:
    """Engines built from ``model`` or one of its ONNX variants, found via its index and ``folders``.

    ``folders`` defaults to the model's folder and the repository's ``engines/``.
    Plans without a readable sidecar are skipped with a warning.
    """
    base = base_model(model)
    search = [Path(f) for f in folders] if folders is not None else [base.parent, ENGINES_DIR]
    candidates = [Path(p) for p in _read_index(index_path(base))] + _plans_in(search)
    records, seen = [], set()
    hashes = {}
    for plan in candidates:
        key = plan.resolve()
        if key in seen or not plan.is_file() or not sidecar_path(plan).is_file():
            continue
        seen.add(key)
        try:
            identity = EngineIdentity.load(plan)
        except VggEdgeError as exc:
            log.warning("skipping engine %s: %s", plan, exc)
            continue
        if not hashes:
            hashes = {file_sha256(v.path) for v in onnx_variants(base) if not v.stale}
        if identity.model_sha256 in hashes:
            records.append(EngineRecord(plan, identity))
    return records


@dataclass(frozen=True)
class Machine:
    """What a plan must have been built for: TensorRT version, GPU name and compute capability."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str


def this_machine(device: int = 0) -> Machine:
    """This machine's TensorRT version and GPU; BackendUnavailable when either cannot be read."""
    from . import identity
    from .build import tensorrt_version

    version = tensorrt_version()
    if version is None:
        raise BackendUnavailable("TensorRT cannot be imported here, so no engine can run")
    name, cc = identity.gpu_identity(device)
    return Machine(version, name, cc)


@dataclass
class EngineChoice:
    """The engine to run (``plan``), or why none can run (``reason``, with the rebuild command)."""

    plan: Optional[Path]
    identity: Optional[EngineIdentity] = None
    reason: Optional[str] = None
    candidates: list[EngineRecord] = field(default_factory=list)


def _wanted(records: list[EngineRecord], model: Path, precision: str) -> list[EngineRecord]:
    if precision == "as-given":
        own = file_sha256(model)
        return [r for r in records if r.identity.model_sha256 == own]
    if precision == "auto":
        return sorted(records, key=lambda r: ENGINE_AUTO_ORDER.index(r.identity.precision))
    return [r for r in records if r.identity.precision == precision]


def find_engine(model: PathLike, *, precision: str = "as-given", max_batch: Optional[int] = None,
                device: int = 0, folders: Optional[Sequence[PathLike]] = None,
                machine: Optional[Machine] = None) -> EngineChoice:
    """The first engine for ``model`` (at ``precision``) that this machine can run with ``max_batch``.

    ``precision``: "as-given" (built from this very ONNX file), "auto" (INT8, then
    FP16, then FP32), or one precision. ``machine`` defaults to :func:`this_machine`.
    """
    model = Path(model)
    check_precision_choice(precision)
    records = engines_for(model, folders)
    wanted = _wanted(records, model, precision)
    high = max(32, max_batch or 0)
    want_batch = (1, 8, high)
    build_precision = {"auto": "fp16", "as-given": spec_precision(model)}.get(precision, precision)
    if not wanted:
        what = "" if precision in ("as-given", "auto") else f"{precision} "
        command = rebuild_command(base_model(model), build_precision, want_batch)
        return EngineChoice(None, reason=f"no {what}TensorRT engine built for {model} (build one with: {command})",
                            candidates=records)
    try:
        here = machine or this_machine(device)
    except BackendUnavailable as exc:
        return EngineChoice(None, reason=str(exc), candidates=records)
    problems = []
    for record in wanted:
        try:
            check_identity(record.identity, model_sha256=None, trt_version=here.tensorrt_version,
                           gpu_name=here.gpu_name, compute_capability=here.compute_capability,
                           batch=max_batch, plan_path=record.plan, model_path=record.identity.model_path)
        except EngineMismatch as exc:
            problems.append(str(exc))
            continue
        return EngineChoice(record.plan, record.identity, None, records)
    return EngineChoice(None, reason=f"{len(wanted)} engine(s) found for {model}, none usable here: "
                        + "\n".join(problems), candidates=records)


def engine_usability(record: EngineRecord, machine: Optional[Machine]) -> str:
    """"usable here", or the first line of why not (for listings)."""
    if machine is None:
        return "not checked (no TensorRT or GPU here)"
    try:
        check_identity(record.identity, model_sha256=None, trt_version=machine.tensorrt_version,
                       gpu_name=machine.gpu_name, compute_capability=machine.compute_capability,
                       plan_path=record.plan, model_path=record.identity.model_path)
    except EngineMismatch as exc:
        lines = str(exc).splitlines()
        return "not usable here: " + "; ".join(l.strip("- ").strip() for l in lines[1:-2])
    return "usable here"


__all__ = ["ENGINE_SUFFIXES", "EngineChoice", "EngineRecord", "Machine", "SIDECAR_SUFFIX", "engine_usability",
           "engines_for", "find_engine", "index_path", "is_engine", "record_engine", "this_machine"]
