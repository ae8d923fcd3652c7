"""The thin TensorRT layer: ONNX -> plan (+ identity sidecar), and plan -> checked engine.

``tensorrt`` is imported only inside functions, through :func:`_trt`. Every flag
decision comes from :mod:`vggedge.engine.flags`; this module only makes the calls.
The unit tests replace :func:`_trt` with a fake module: they check *our* calls
(which members we touch, what we pass, how we report failures), not TensorRT.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Union

from ..atomic import atomic_target, check_target
from ..errors import BackendUnavailable, ConfigError, EngineMismatch, ModelError
from ..catalogue import file_sha256
from ..spec import ModelSpec, load_spec_for
from .flags import DEFAULT_BATCH, DEFAULT_WORKSPACE_BYTES, BuildPlan, check_batch, check_precision, make_plan
from .identity import EngineIdentity, check_identity, engine_filename, gpu_identity, rebuild_command
from .trt_log import OperationLog, process_logger

_log = logging.getLogger(__name__)
LogFn = Callable[[str], None]
PathLike = Union[str, Path]


def _trt() -> Any:
    """The ``tensorrt`` module; BackendUnavailable (never ImportError) when it cannot be imported."""
    try:
        import tensorrt
    except ImportError as exc:
        raise BackendUnavailable(
            f"TensorRT is not installed ({exc}). It ships with JetPack on Jetson; on servers install "
            "NVIDIA's tensorrt wheel. The onnxruntime backends run without it.") from None
    except Exception as exc:  # a broken install: missing libnvinfer, CUDA mismatch, ...
        raise BackendUnavailable(f"TensorRT is installed but failed to import: {exc}") from None
    return tensorrt


def tensorrt_version() -> Optional[str]:
    """``tensorrt.__version__``, or None when TensorRT cannot be imported."""
    try:
        return str(_trt().__version__)
    except BackendUnavailable:
        return None


def _said(op: OperationLog) -> str:
    return op.said()


def _member(enum: Any, name: str) -> Any:
    """``enum.<name>``, or BackendUnavailable naming the member this TensorRT lacks."""
    try:
        return getattr(enum, name)
    except AttributeError:
        raise BackendUnavailable(f"this TensorRT has no {getattr(enum, '__name__', 'enum')}.{name}; "
                                 "its version string and its API disagree") from None


def _parser_error(err: Any) -> str:
    """One line per ONNX parser error: node index, name and operator (10.x+) when known, then the text."""
    def call(attr: str) -> Any:
        try:
            return getattr(err, attr)()
        except Exception:  # absent on this version (AttributeError) or not callable
            return None

    node, name, op, desc = (call(a) for a in ("node", "node_name", "node_operator", "desc"))
    where = " ".join(([f"node {node}"] if isinstance(node, int) and node >= 0 else [])
                     + ([repr(name)] if name else []) + ([f"({op})"] if op else []))
    return f"{where}: {desc or err}" if where else str(desc or err)


def _parse(parser: Any, onnx_path: Path, op: OperationLog) -> None:
    if parser.parse(onnx_path.read_bytes(), str(onnx_path)):
        return
    errors = [_parser_error(parser.get_error(i)) for i in range(parser.num_errors)]
    listed = "\n".join(f"  {i + 1}. {e}" for i, e in enumerate(errors)) or "  (the parser reported no details)"
    raise ModelError(f"{onnx_path}: TensorRT's ONNX parser failed with {len(errors)} error(s):\n{listed}"
                     + _said(op))


def _add_profile(builder: Any, network: Any, config: Any, input_name: str, batch: tuple[int, int, int]) -> None:
    """One optimization profile over the batch dimension; the other dims come from the network input."""
    inputs = {network.get_input(i).name: network.get_input(i) for i in range(network.num_inputs)}
    if input_name not in inputs:
        raise ModelError(f"the ONNX has no input {input_name!r}; its inputs are {sorted(inputs)}")
    shape = tuple(int(d) for d in inputs[input_name].shape)
    if len(shape) < 2 or any(d < 0 for d in shape[1:]):
        raise ModelError(f"input {input_name!r} has shape {shape}; only the batch (first) dimension may be dynamic")
    if shape[0] >= 0 and batch != (shape[0],) * 3:
        n = shape[0]
        raise ConfigError(f"input {input_name!r} has a fixed batch of {n}; build with --batch {n},{n},{n} "
                          "or export the ONNX with a dynamic batch")
    rest = shape[1:]
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, (batch[0], *rest), (batch[1], *rest), (batch[2], *rest))
    if config.add_optimization_profile(profile) < 0:
        raise ConfigError(f"TensorRT rejected the batch profile {batch} for input {input_name!r} {shape}")


def _write_bytes(path: Path, data: Any) -> None:
    """``data`` (bytes or a TensorRT host buffer) to ``path``, through a temporary name (never half-written)."""
    with atomic_target(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)


def _write_plan(plan_path: Path, serialized: Any, identity: EngineIdentity) -> None:
    """The plan and its sidecar, each complete or absent under its final name.

    The sidecar is renamed into place first and the plan last, so a plan under its
    final name always has its sidecar; a build stopped in between leaves at most a
    sidecar (ignored without its plan), never a plan that cannot be checked.
    """
    with atomic_target(plan_path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(serialized)
        identity.save(plan_path)


def _attach_timing_cache(config: Any, path: Path, echo: LogFn) -> None:
    """Load the timing cache from ``path`` (or start an empty one) and attach it to ``config``."""
    blob = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(blob)
    if cache is None or not config.set_timing_cache(cache, False):
        echo(f"timing cache {path} is unusable here (other TensorRT or GPU?); starting an empty one")
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, False)


def _build(trt: Any, plan: BuildPlan, onnx_path: Path, op: OperationLog, input_name: str,
           cache_path: Optional[Path], echo: LogFn) -> Any:
    """The TensorRT calls of one build; returns the serialized plan."""
    logger = op.logger
    builder = trt.Builder(logger)
    bits = 0
    for name in plan.network_flags:
        bits |= 1 << int(_member(trt.NetworkDefinitionCreationFlag, name))
    network = builder.create_network(bits)
    parser = trt.OnnxParser(network, logger)
    _parse(parser, onnx_path, op)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_bytes)
    for name in plan.builder_flags:
        config.set_flag(_member(trt.BuilderFlag, name))
    _add_profile(builder, network, config, input_name, plan.batch)
    if cache_path is not None:
        _attach_timing_cache(config, cache_path, echo)
    echo(f"building {plan.precision} engine from {onnx_path} (this can take minutes)")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ModelError(f"{onnx_path}: TensorRT {plan.version} could not build a {plan.precision} engine "
                         f"({plan.describe()})" + _said(op))
    if cache_path is not None:
        _write_bytes(cache_path, config.get_timing_cache().serialize())
    return serialized


def build_engine(onnx_path: PathLike, plan_path: PathLike, *, precision: str,
                 batch: tuple[int, int, int] = DEFAULT_BATCH, workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
                 timing_cache_path: Optional[PathLike] = None, input_name: Optional[str] = None,
                 onnx_precision: Optional[str] = None, spec: Optional[ModelSpec] = None,
                 gpu: Optional[tuple[str, str]] = None, calibration: Optional[dict[str, Any]] = None,
                 log: Optional[LogFn] = None) -> Path:
    """Build a plan from ``onnx_path``, write it with its ``.engine.json`` sidecar and return its path.

    ``plan_path`` may be a directory (the file is then named by ``engine_filename``).
    ``spec``, ``input_name`` and ``onnx_precision`` (what the ONNX carries) default to
    the ONNX's spec sidecar; ``gpu`` (name, compute capability) to :func:`gpu_identity`.
    The timing cache is only valid for one TensorRT version and GPU: key its path accordingly.
    """
    echo = log or _log.info
    check_precision(precision)
    batch = check_batch(batch)
    trt = _trt()
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise ModelError(f"{onnx_path}: ONNX file not found")
    spec = spec or load_spec_for(onnx_path)
    plan = make_plan(trt.__version__, precision, onnx_precision=onnx_precision or spec.precision,
                     batch=batch, workspace_bytes=workspace_bytes)
    gpu_name, cc = gpu or gpu_identity()
    model_sha256 = file_sha256(onnx_path)
    plan_path = Path(plan_path)
    if plan_path.is_dir():
        plan_path = plan_path / engine_filename(model_sha256, precision, batch, trt.__version__, gpu_name, cc,
                                                name=spec.name)
    check_target(plan_path, "TensorRT engine")  # before minutes of building
    cache_path = Path(timing_cache_path) if timing_cache_path is not None else None
    if cache_path is not None:
        check_target(cache_path, "TensorRT timing cache")
    echo(plan.describe())
    with process_logger(trt).operation(echo) as op:
        serialized = _build(trt, plan, onnx_path, op, input_name or spec.input_name, cache_path, echo)
    if calibration is None and isinstance(spec.extra.get("calibration"), dict):
        calibration = spec.extra["calibration"]
    _write_plan(plan_path, serialized, EngineIdentity(model_sha256, precision, batch, str(trt.__version__), gpu_name,
                                                      cc, spec=spec.replace(precision=precision),
                                                      calibration=calibration, model_path=str(onnx_path)))
    echo(f"wrote {plan_path}")
    return plan_path


@dataclass
class LoadedEngine:
    """A deserialized engine with what keeps it valid (its runtime), its identity, and what TensorRT said.

    ``log`` is the slice of the process's TensorRT logger from this load on
    (``log.messages``); the logger itself lives as long as the process.
    """

    engine: Any
    identity: EngineIdentity
    runtime: Any
    log: OperationLog


def load_engine(plan_path: PathLike, *, model_sha256: Optional[str] = None, precision: Optional[str] = None,
                batch: Union[tuple[int, int, int], int, None] = None, gpu: Optional[tuple[str, str]] = None,
                model_path: Optional[PathLike] = None, log: Optional[LogFn] = None) -> LoadedEngine:
    """Check the plan's sidecar against this machine and the request, then deserialize it.

    A mismatch (or a None from TensorRT) raises EngineMismatch with the rebuild command.
    """
    plan_path = Path(plan_path)
    if not plan_path.is_file():
        raise EngineMismatch(f"{plan_path}: no engine there. Build one with: "
                             + rebuild_command(model_path, precision or "fp16", DEFAULT_BATCH))
    identity = EngineIdentity.load(plan_path)
    trt = _trt()
    gpu_name, cc = gpu or gpu_identity()
    check_identity(identity, model_sha256=model_sha256, trt_version=str(trt.__version__), gpu_name=gpu_name,
                   compute_capability=cc, precision=precision, batch=batch, plan_path=plan_path,
                   model_path=model_path)
    op = process_logger(trt).operation(log)
    try:
        runtime = trt.Runtime(op.logger)
        engine = runtime.deserialize_cuda_engine(plan_path.read_bytes())
    finally:
        op.close()  # later messages (from execution) stay readable in op.messages
    if engine is None:
        command = rebuild_command(model_path or identity.model_path, identity.precision, identity.batch)
        raise EngineMismatch(f"{plan_path}: TensorRT {trt.__version__} could not deserialize this plan although "
                             f"its sidecar matches this machine." + _said(op)
                             + f"\nRebuild it on this machine with:\n  {command}")
    return LoadedEngine(engine, identity, runtime, op)
