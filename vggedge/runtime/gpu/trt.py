"""TensorRT runner: a plan file (checked against its identity sidecar) run through the slot pipeline.

Everything goes through the tensor-name API present in TensorRT 8.5 to 11.x:
``num_io_tensors`` / ``get_tensor_name/mode/dtype/shape`` and
``get_tensor_profile_shape(name, 0)`` describe the I/O; per batch
``set_input_shape`` (only when the batch changes), ``set_tensor_address`` for
every I/O tensor and ``execute_async_v3(stream)`` on our stream, its bool checked.
Buffers are sized for profile 0's MAX batch and allocated once in ``activate``;
``options.max_batch`` above it is refused (rebuild with a wider ``--batch``), and
a batch below profile 0's MIN is padded up to it.
I/O dtypes (FP32 or FP16) come from the engine.

Execution contexts: TensorRT 10+ lets several contexts share profile 0, so each
slot gets its own context and computes overlap. TensorRT 8.x forbids that, so
there one context serves all slots and each slot's execution waits (on the GPU)
for the previous one; copies still overlap with compute.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ...errors import BackendUnavailable, ConfigError, ModelError
from ..base import RunnerOptions, TensorMeta
from .cuda import check_ok
from .pipeline import Slot, TensorSpec
from .runner import PipelineRunner

#: TensorRT DataType names -> numpy; None marks types vggedge does not feed or read.
TRT_DTYPES: dict[str, Optional[type]] = {
    "FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "INT64": np.int64,
    "UINT8": np.uint8, "BOOL": np.bool_, "BF16": None, "FP8": None, "INT4": None, "FP4": None,
}


def numpy_dtype(trt_dtype: Any, tensor: str = "?") -> np.dtype:
    """numpy dtype of a ``tensorrt.DataType``; ModelError for types numpy cannot hold."""
    name = str(getattr(trt_dtype, "name", trt_dtype)).rsplit(".", 1)[-1].upper()
    dtype = TRT_DTYPES.get(name)
    if dtype is None:
        raise ModelError(f"engine tensor {tensor!r} has TensorRT type {name}, which vggedge cannot feed or read; "
                         "rebuild the engine with FP32 or FP16 I/O")
    return np.dtype(dtype)


@dataclass(frozen=True)
class IoTensor:
    """One engine I/O tensor: engine shape (-1 = dynamic) and, for inputs, profile 0's (min, opt, max)."""

    name: str
    is_input: bool
    dtype: np.dtype
    shape: tuple[int, ...]
    profile: Optional[tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = None

    def at_batch(self, n: int) -> tuple[int, ...]:
        """The input shape for a batch of ``n`` (only the batch dimension may be dynamic)."""
        return (n, *self.shape[1:])


def describe_io(trt: Any, engine: Any) -> list[IoTensor]:
    """Every I/O tensor of ``engine`` through the tensor-name API; ModelError for unsupported shapes."""
    tensors = []
    for index in range(engine.num_io_tensors):
        name = engine.get_tensor_name(index)
        is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        shape = tuple(int(d) for d in engine.get_tensor_shape(name))
        if is_input and (not shape or any(d < 0 for d in shape[1:])):
            raise ModelError(f"engine input {name!r} has shape {shape}; vggedge needs a leading batch dimension "
                             "and static other dimensions (rebuild from a fixed-size ONNX)")
        profile = None
        if is_input:
            profile = tuple(tuple(int(d) for d in s) for s in engine.get_tensor_profile_shape(name, 0))
        tensors.append(IoTensor(name, is_input, numpy_dtype(engine.get_tensor_dtype(name), name), shape, profile))
    if not any(t.is_input for t in tensors) or all(t.is_input for t in tensors):
        raise ModelError("engine must have at least one input and one output tensor")
    return tensors


def batch_range(tensors: list[IoTensor]) -> tuple[int, int]:
    """(min, max) batch of optimization profile 0, agreed by every input; static batch gives (n, n)."""
    ranges = set()
    for t in tensors:
        if t.is_input:
            ranges.add((t.shape[0], t.shape[0]) if t.shape[0] >= 0 else (t.profile[0][0], t.profile[2][0]))
    if len(ranges) != 1:
        raise ModelError(f"engine inputs disagree on the batch range: {sorted(ranges)}")
    return ranges.pop()


def _tensorrt() -> Any:
    try:
        import tensorrt
    except ImportError as exc:
        raise BackendUnavailable(f"TensorRT is not installed ({exc}); it ships with JetPack on Jetson, "
                                 "on servers install NVIDIA's tensorrt wheel") from None
    except Exception as exc:  # broken install: missing libnvinfer, CUDA mismatch
        raise BackendUnavailable(f"TensorRT is installed but failed to import: {exc}") from None
    return tensorrt


class TrtRunner(PipelineRunner):
    """Runs a TensorRT plan: ``with TrtRunner("vgg16.fp16.plan", options) as r: r.infer({"images": x})``.

    The max batch comes from the engine's profile; ``options.max_batch`` (when
    options are given) must fit in it. ``model_sha256`` / ``precision`` /
    ``model_path`` are checked against the sidecar (EngineMismatch with the
    rebuild command when they differ).
    """

    name = "trt"
    range_source = "the engine's optimization profile (rebuild the engine with a wider --batch range)"

    def __init__(self, plan: str | Path, options: RunnerOptions | None = None, *, model_sha256: str | None = None,
                 precision: str | None = None, model_path: str | Path | None = None) -> None:
        super().__init__(options)
        self.wanted_max_batch = options.max_batch if options is not None else None
        self.plan = Path(plan)
        self.model_sha256, self.precision, self.model_path = model_sha256, precision, model_path
        self.loaded: Any = None
        self.io: list[IoTensor] = []
        self._contexts: list[Any] = []
        self._context_batch: list[int] = []
        self._shared = False
        self._last_slot: Slot | None = None

    # activation -----------------------------------------------------------------
    def _open_backend(self) -> tuple[list[TensorSpec], list[TensorSpec], int]:
        trt = _tensorrt()
        from ...engine.build import load_engine
        from ...engine.identity import gpu_identity

        self.loaded = load_engine(self.plan, model_sha256=self.model_sha256, precision=self.precision,
                                  gpu=gpu_identity(self.device), model_path=self.model_path)
        engine = self.loaded.engine
        self.io = describe_io(trt, engine)
        low, high = batch_range(self.io)
        if self.wanted_max_batch is not None and self.wanted_max_batch > high:
            raise ConfigError(f"{self.plan}: batches of up to {self.wanted_max_batch} were asked for, but this "
                              f"engine's profile takes {low}..{high}; lower the batch size or rebuild with "
                              f"`vggedge build ... --batch {low},{min(max(low, 8), self.wanted_max_batch)},"
                              f"{self.wanted_max_batch}`")
        major = int(str(trt.__version__).split(".")[0])
        self._shared = self.num_slots > 1 and major < 10
        self._contexts = [self._new_context(engine) for _ in range(1 if self._shared else self.num_slots)]
        self._context_batch = [0] * len(self._contexts)
        inputs = [TensorSpec(t.name, t.at_batch(high), t.dtype) for t in self.io if t.is_input]
        return inputs, self._output_specs(high), low

    def _new_context(self, engine: Any) -> Any:
        context = engine.create_execution_context()
        if context is None:
            raise BackendUnavailable(f"{self.plan}: TensorRT could not create an execution context "
                                     "(out of GPU memory?)" + self._said())
        return context

    def _output_specs(self, high: int) -> list[TensorSpec]:
        """Output shapes at the max batch, read from a context after setting the input shapes."""
        context = self._contexts[0]
        self._set_shapes(0, high)
        specs = []
        for t in self.io:
            if t.is_input:
                continue
            shape = tuple(int(d) for d in context.get_tensor_shape(t.name))
            if not shape or shape[0] != high or any(d < 0 for d in shape):
                raise ModelError(f"engine output {t.name!r} has shape {shape} at batch {high}; vggedge needs "
                                 "batch-first outputs whose other dimensions follow from the input shape")
            specs.append(TensorSpec(t.name, shape, t.dtype))
        return specs

    def _bind_slots(self, slots: list[Slot]) -> None:
        if not self._shared:
            for slot, context in zip(slots, self._contexts):
                self._set_addresses(context, slot)

    def _close_backend(self) -> None:
        self._contexts, self._context_batch, self._last_slot = [], [], None
        self.loaded = None  # engine and runtime go together (the TensorRT logger lives for the process)

    def _input_metadata(self) -> dict[str, TensorMeta]:
        return {t.name: TensorMeta(t.name, t.dtype, (None if t.shape[0] < 0 else t.shape[0], *t.shape[1:]))
                for t in self.io if t.is_input}

    # one batch ------------------------------------------------------------------
    def _execute(self, slot: Slot, batch_n: int) -> None:
        index = 0 if self._shared else slot.index
        context = self._contexts[index]
        if self._shared:
            previous = self._last_slot
            if previous is not None and previous is not slot:
                slot.stream.wait_for(previous.events["compute_end"])
            self._set_addresses(context, slot)
            self._last_slot = slot
        self._set_shapes(index, batch_n)
        check_ok(context.execute_async_v3(slot.stream.handle), f"{self.plan.name}: execute_async_v3",
                 "TensorRT rejected the enqueue" + self._said())

    def _set_shapes(self, index: int, batch_n: int) -> None:
        if self._context_batch[index] == batch_n:
            return
        context = self._contexts[index]
        for t in self.io:
            if t.is_input:
                check_ok(context.set_input_shape(t.name, t.at_batch(batch_n)),
                         f"set_input_shape({t.name!r}, {t.at_batch(batch_n)})", self._said())
        self._context_batch[index] = batch_n

    def _set_addresses(self, context: Any, slot: Slot) -> None:
        for t in self.io:
            check_ok(context.set_tensor_address(t.name, slot.device[t.name].ptr),
                     f"set_tensor_address({t.name!r})", self._said())

    def _said(self) -> str:
        lines = list(getattr(getattr(self.loaded, "log", None), "messages", []))[-5:]
        return ("; TensorRT said: " + " | ".join(lines)) if lines else ""

    def describe(self) -> str:
        if self.loaded is None:
            return f"{self.name} ({self.plan.name}, inactive)"
        mode = "one context per slot" if not self._shared else "one shared context"
        return f"{self.name} ({self.plan.name}, {self.loaded.identity.precision}, {self.num_slots} slots, {mode})"
