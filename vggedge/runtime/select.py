"""Backend registry and selection: TensorRT, then onnxruntime CUDA, then onnxruntime CPU.

Backends are imported lazily; every probe returns None when the backend can run
here, or the reason it cannot. Each backend's planner hook (runtime/plan.py;
runtime/cpu/planner.py, runtime/gpu/planner.py) names the exact file it would run
(engine, ONNX variant or CPU variant) and its runner's options; selection turns
the first into a :class:`Plan` (file, spec, options, why, one reason per skipped
backend, so ``auto`` never falls back silently), then the plan into a runner.
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..engine.identity import EngineIdentity, check_identity
from ..catalogue import base_model, check_precision_choice
from ..engine.registry import Machine, is_engine, this_machine
from ..errors import BackendUnavailable, ConfigError, ModelError, VggEdgeError
from ..spec import ModelSpec
from .base import Runner, RunnerOptions
from .plan import Plan, PlannerHook, PlanRequest, load_object, required_spec, spec_if_any

log = logging.getLogger(__name__)


def _module_missing(module: str) -> str | None:
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    return None if found else f"Python package {module!r} is not installed"


def probe_ort_cpu() -> str | None:
    """onnxruntime with its CPU provider."""
    return _module_missing("onnxruntime")


def probe_ort_cuda() -> str | None:
    """onnxruntime-gpu with a CUDA provider, pycuda (our buffers and streams) and a visible NVIDIA GPU."""
    reason = _module_missing("onnxruntime")
    if reason:
        return reason
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return (f"onnxruntime {ort.__version__} has no CUDAExecutionProvider "
                "(install onnxruntime-gpu: pip install 'vggedge[gpu]')")
    return _module_missing("pycuda") or gpu_reason()


def probe_trt() -> str | None:
    """TensorRT Python bindings, pycuda and a GPU."""
    reason = _module_missing("tensorrt") or _module_missing("pycuda")
    return reason or gpu_reason()


def gpu_reason() -> str | None:
    """None if the CUDA driver reports at least one GPU, else why not (no context is created)."""
    import ctypes

    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return "no NVIDIA driver (libcuda.so.1 not found): no GPU on this machine"
    count = ctypes.c_int(0)
    if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value == 0:
        return "the NVIDIA driver reports no usable GPU"
    return None


@dataclass(frozen=True)
class Backend:
    """One registered backend: its probe, its runner class, what it runs, and its planner hook.

    ``planner`` ("module:function", see runtime/plan.py) decides the file and the
    runner's keyword options; None takes the default hook of its ``artefact`` kind.
    ``options_keyword`` is the runner constructor's name for the RunnerOptions.
    """

    name: str
    runner_path: str  # "module:Class", imported only when used
    probe: Callable[[], str | None]
    artefact: str  # "onnx" or "engine"
    planner: str | None = None
    preparer: str | None = None  # "module:function(model, calib)" writing the files it runs best with
    options_keyword: str = "options"

    def load_class(self) -> Callable[..., Runner]:
        return load_object(self.runner_path)

    def load_planner(self) -> PlannerHook:
        return load_object(self.planner or DEFAULT_PLANNERS[self.artefact])


DEFAULT_PLANNERS = {"engine": "vggedge.runtime.gpu.planner:plan_engine",
                    "onnx": "vggedge.runtime.gpu.planner:plan_onnx_gpu"}
BACKENDS: dict[str, Backend] = {
    "trt": Backend("trt", "vggedge.runtime.gpu.trt:TrtRunner", probe_trt, "engine"),
    "ort-cuda": Backend("ort-cuda", "vggedge.runtime.gpu.ort_cuda:OrtCudaRunner", probe_ort_cuda, "onnx"),
    "ort-cpu": Backend("ort-cpu", "vggedge.runtime.ort:OrtRunner", probe_ort_cpu, "onnx",
                       planner="vggedge.runtime.cpu.planner:plan_cpu",
                       preparer="vggedge.runtime.cpu.variants:prepare_variants", options_keyword="runner_options"),
}
AUTO_ORDER = ("trt", "ort-cuda", "ort-cpu")


def availability() -> dict[str, str | None]:
    """Each backend's reason it cannot run here, or None when it can."""
    return {name: backend.probe() for name, backend in BACKENDS.items()}


@dataclass
class Selection:
    """The chosen backend, its runner (not yet activated), the file it runs with its spec, why, and the skips."""

    backend: str
    runner: Runner
    skipped: list[tuple[str, str]] = field(default_factory=list)
    artefact: Path | None = None
    spec: ModelSpec | None = None
    why: str = ""
    options: RunnerOptions = field(default_factory=RunnerOptions)

    def require_spec(self) -> ModelSpec:
        """The spec of the file that runs; ModelError naming the missing sidecar when it has none."""
        return required_spec(self.spec, self.artefact)

    def report(self) -> dict[str, Any]:
        """The runner's report plus what selection decided (the same keys for every backend)."""
        return {**self.runner.report(), "artefact": str(self.artefact) if self.artefact else None,
                "precision": self.spec.precision if self.spec else None, "why": self.why,
                "skipped": dict(self.skipped)}


def plan_selection(model: str | Path, backend: str = "auto", *, options: RunnerOptions | None = None,
                   precision: str = "as-given", engine: str | Path | None = None,
                   engine_reason: str | None = None) -> Plan:
    """Decide which backend runs which file with which spec and options, constructing nothing.

    A fixed-batch model (its spec says so) is planned at that batch. Raises like
    :func:`select_runner`; ``vggedge info --model`` shows the plan.
    """
    options = options or RunnerOptions()
    check_precision_choice(precision)
    if backend != "auto" and backend not in BACKENDS:
        raise ConfigError(f"backend {backend!r} is unknown; choose auto or one of {sorted(BACKENDS)}")
    if is_engine(model):
        return _engine_plan(Path(model), backend, options, precision)
    request = PlanRequest(Path(model), precision, _fixed_batch(Path(model), options),
                          Path(engine) if engine is not None else None, engine_reason)
    order = AUTO_ORDER if backend == "auto" else (backend,)
    skipped: list[tuple[str, str]] = []
    for name in order:
        entry = BACKENDS[name]
        reason = entry.probe()
        if reason is None:
            try:
                choice = entry.load_planner()(request)
            except ModelError as exc:
                choice = str(exc)
            reason = choice if isinstance(choice, str) else None
        if reason is not None:
            if backend != "auto":
                raise BackendUnavailable(f"backend {name!r} cannot run here: {reason}")
            log.info("backend %s skipped: %s", name, reason)
            skipped.append((name, reason))
            continue
        spec = choice.spec or spec_if_any(choice.artefact)
        log.info("backend %s runs %s", name, choice.why)
        return Plan(name, choice.artefact, spec, choice.options or request.options, choice.kwargs, choice.why,
                    skipped, choice.runner)
    raise BackendUnavailable("no backend can run here: " + "; ".join(f"{n}: {r}" for n, r in skipped))


def _fixed_batch(model: Path, options: RunnerOptions) -> RunnerOptions:
    """The options at the model's fixed batch when its spec has one (every variant shares it)."""
    spec = spec_if_any(model) if model.is_file() else None
    if spec is not None and spec.fixed_batch and spec.fixed_batch != options.max_batch:
        return dataclasses.replace(options, max_batch=spec.fixed_batch)
    return options


def _engine_plan(plan: Path, backend: str, options: RunnerOptions, precision: str) -> Plan:
    """``--model x.plan``: only an engine backend runs it, after its sidecar is checked against this machine."""
    identity = EngineIdentity.load(plan)
    source = identity.model_path or "the ONNX it was built from"
    names = [n for n in (AUTO_ORDER if backend == "auto" else (backend,)) if BACKENDS[n].artefact == "engine"]
    if not names:
        raise ConfigError(f"{plan} is a TensorRT engine; backend {backend!r} runs ONNX models: "
                          f"pass --model {source} instead")
    if precision in ("fp32", "fp16", "int8") and precision != identity.precision:
        raise ConfigError(f"{plan} is a {identity.precision} engine, but precision {precision} was requested")
    name = names[0]
    reason = BACKENDS[name].probe()
    if reason is not None:
        raise BackendUnavailable(f"backend {name!r} cannot run {plan} here: {reason} "
                                 f"(onnxruntime can run its source ONNX: --model {source})")
    if identity.spec.fixed_batch and identity.spec.fixed_batch != options.max_batch:
        options = dataclasses.replace(options, max_batch=identity.spec.fixed_batch)
    here = this_machine(options.device)
    check_identity(identity, model_sha256=None, trt_version=here.tensorrt_version, gpu_name=here.gpu_name,
                   compute_capability=here.compute_capability, batch=options.max_batch, plan_path=plan,
                   model_path=identity.model_path)
    why = f"{plan.name}: the TensorRT {identity.precision} engine given (its sidecar fits this machine)"
    return Plan(name, plan, identity.spec, options, {"model_path": identity.model_path}, why, [])


def open_plan(plan: Plan) -> Selection:
    """The (inactive) runner a plan describes, with what was decided."""
    entry = BACKENDS[plan.backend]
    cls = load_object(plan.runner) if plan.runner else entry.load_class()
    runner = cls(plan.artefact, **{entry.options_keyword: plan.options}, **plan.kwargs)
    return Selection(plan.backend, runner, plan.skipped, plan.artefact, plan.spec, plan.why, plan.options)


def select_runner(model: str | Path, backend: str = "auto", *, options: RunnerOptions | None = None,
                  precision: str = "as-given", engine: str | Path | None = None,
                  engine_reason: str | None = None) -> Selection:
    """Pick a runner for a model: an ONNX file (engines built for it are found) or an engine.

    ``backend`` is "auto" or a registry name. ``options`` (the one set every
    runner takes) go to whichever backend is chosen. ``precision`` picks among
    the artefacts beside the model: "as-given" (this file, or an engine built
    from it), "auto" (the fastest that exists here), or "fp32"/"fp16"/"int8".
    For the engine backend, a matching engine is looked up (engine/registry.py)
    unless ``engine`` is given; when none fits this GPU or TensorRT, the skip
    reason carries the rebuild command (``engine_reason`` overrides it). A
    forced backend that cannot run raises BackendUnavailable with the reason.
    The selection names the file that runs (``artefact``), its ``spec`` and ``why``.
    """
    return open_plan(plan_selection(model, backend, options=options, precision=precision, engine=engine,
                                    engine_reason=engine_reason))


def engine_unavailable() -> str | None:
    """None when an engine backend (TensorRT) can run here, else why not (``vggedge build`` asks this)."""
    reasons = [entry.probe() for entry in BACKENDS.values() if entry.artefact == "engine"]
    return None if any(r is None for r in reasons) else "; ".join(r for r in reasons if r) or "no engine backend"


def engine_machine(device: int = 0) -> Machine | None:
    """This machine's TensorRT version and GPU when an engine backend can run here, else None."""
    for entry in BACKENDS.values():
        if entry.artefact == "engine" and entry.probe() is None:
            try:
                return this_machine(device)
            except VggEdgeError:
                return None
    return None


def prepare_artefacts(model: str | Path, backend: str = "auto", *, calib: str | Path,
                      options: RunnerOptions | None = None, precision: str = "auto") -> str:
    """Write the files the backend that will run ``model`` works best with (the CPU's INT8 variants).

    Returns that backend's name; backends with nothing to prepare are left alone.
    """
    plan = plan_selection(model, backend, options=options, precision=precision)
    preparer = BACKENDS[plan.backend].preparer
    if preparer is not None:
        load_object(preparer)(base_model(model), calib)
    return plan.backend
