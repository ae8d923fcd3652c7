"""onnxruntime CUDA runner: an ONNX file on CUDAExecutionProvider, on our stream and our buffers.

The session runs on one compute stream of ours (provider option
``user_compute_stream``), through an IOBinding per slot that binds the slot's
device buffers by pointer, so onnxruntime copies nothing. Each slot's H2D copy is
on the slot's stream; the compute stream waits for it (GPU-side event), runs the
session without a host synchronisation (run option
``disable_synchronize_execution_providers``), and the slot's stream waits for the
compute before its D2H copy.

onnxruntime-gpu falls back to the CPU silently when CUDA or cuDNN do not load;
this runner checks ``session.get_providers()[0]`` and raises BackendUnavailable
instead. It also checks ``session.get_provider_options()`` that onnxruntime really
took our stream (``has_user_compute_stream``): a build that ignores the option
would run on a stream of its own, unordered with our copies.

Teardown order: the session (which holds cuBLAS/cuDNN handles bound to our
stream) goes first, then the context is synchronised, then the stream, the
events and the slots' buffers are freed. ``onnxruntime.preload_dlls()`` (1.21+) is called first so the nvidia pip
wheels' CUDA/cuDNN libraries are found.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import BackendUnavailable, ModelError
from ..base import RunnerOptions, TensorMeta
from ..ort import ORT_TYPES, OrtOptions
from .cuda import CudaEvent, CudaStream
from .ort_cuda_options import CudaOptions, merged
from .pipeline import Slot, TensorSpec
from .runner import PipelineRunner

log = logging.getLogger(__name__)
CUDA_EP = "CUDAExecutionProvider"
MIN_ORT_GPU = "1.18"  # the Python API takes user_compute_stream since 1.17/1.18 (onnxruntime PR 19229)


def _onnxruntime_gpu() -> Any:
    """``onnxruntime`` with a CUDA provider, CUDA/cuDNN preloaded when it can; else BackendUnavailable."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise BackendUnavailable(f"onnxruntime is not installed ({exc}); pip install 'vggedge[gpu]'") from None
    if CUDA_EP not in ort.get_available_providers():
        raise BackendUnavailable(f"onnxruntime {ort.__version__} has no {CUDA_EP} (this is the CPU build); "
                                 "pip uninstall onnxruntime && pip install onnxruntime-gpu")
    if hasattr(ort, "preload_dlls"):
        try:
            ort.preload_dlls()
        except Exception as exc:  # best effort: system libraries may still be found
            log.info("onnxruntime.preload_dlls() failed: %s", exc)
    return ort


def _static_dims(node: Any, what: str) -> tuple[int, ...]:
    """Non-batch dims of an ONNX input/output; ModelError if any is symbolic."""
    rest = tuple(node.shape[1:])
    if not node.shape or not all(isinstance(d, int) and d > 0 for d in rest):
        raise ModelError(f"{what} {node.name!r} has shape {node.shape}; vggedge needs a leading batch dimension "
                         "and static other dimensions")
    return rest


def _dtype(node: Any, what: str) -> np.dtype:
    dtype = ORT_TYPES.get(node.type)
    if dtype is None:
        raise ModelError(f"{what} {node.name!r} has type {node.type}, which vggedge cannot feed or read")
    return np.dtype(dtype)


def check_stream_in_use(session: Any, handle: int, version: str) -> None:
    """BackendUnavailable unless the session's CUDA provider reports our stream (``has_user_compute_stream``)."""
    options = session.get_provider_options().get(CUDA_EP, {})
    if str(options.get("has_user_compute_stream")) != "1" or str(options.get("user_compute_stream")) != str(handle):
        raise BackendUnavailable(
            f"ort-cuda: onnxruntime {version} did not take our CUDA stream (its provider options report "
            f"has_user_compute_stream={options.get('has_user_compute_stream')!r}, "
            f"user_compute_stream={options.get('user_compute_stream')!r}, expected 1 and {handle}); "
            f"without it its work is unordered with our copies. Install onnxruntime-gpu >= {MIN_ORT_GPU} "
            "(pip install 'vggedge[gpu]')")


class OrtCudaRunner(PipelineRunner):
    """``with OrtCudaRunner("vgg16.onnx", RunnerOptions(max_batch=8)) as r: r.infer({"images": x})``.

    ``options.max_batch`` sizes the buffers (allocated once; a batch fixed in the
    ONNX wins); a larger batch raises InputError. ``ort_options`` are the session
    settings. ``cuda`` are the typed CUDA provider options (:class:`CudaOptions`:
    NHWC convolutions by default, CUDA graphs on request, quiet logs);
    ``provider_options`` (strings, e.g. ``{"cudnn_conv_algo_search": "HEURISTIC"}``)
    are merged into them. ``synchronize_run=True`` lets onnxruntime block the host
    after each run (slower, for debugging).
    """

    name = "ort-cuda"
    range_source = "max_batch (raise RunnerOptions.max_batch, e.g. the app's --batch-size)"

    def __init__(self, model: str | Path | bytes, options: RunnerOptions | None = None, *,
                 ort_options: OrtOptions | None = None, provider_options: dict[str, str] | None = None,
                 synchronize_run: bool = False, cuda: CudaOptions | None = None) -> None:
        super().__init__(options)
        self.model, self.max_batch = model, self.runner_options.max_batch
        self.options = ort_options or OrtOptions()
        self.cuda = merged(cuda, provider_options)
        self.synchronize_run = synchronize_run
        self.session: Any = None
        self._compute: CudaStream | None = None
        self._events: list[CudaEvent] = []
        self._run_options: Any = None
        self._ort: Any = None

    # activation -----------------------------------------------------------------
    def _open_backend(self) -> tuple[list[TensorSpec], list[TensorSpec], int]:
        self.cuda.quiet_libraries()  # before preload_dlls() loads cuDNN, which may read its log variables then
        ort = _onnxruntime_gpu()
        if not isinstance(self.model, bytes) and not Path(self.model).is_file():
            raise ModelError(f"{self.model}: ONNX model file not found")
        self._compute = CudaStream()
        cuda_options = self.cuda.provider_options(self.device, self._compute.handle, ort.__version__)
        if hasattr(ort, "set_default_logger_severity"):
            ort.set_default_logger_severity(self.cuda.severity())
        session_options = self.options.session_options()
        session_options.log_severity_level = self.cuda.severity()
        source = self.model if isinstance(self.model, bytes) else os.fspath(self.model)
        try:
            self.session = ort.InferenceSession(source, session_options, providers=[(CUDA_EP, cuda_options)])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            if "user_compute_stream" in str(exc):
                raise BackendUnavailable(f"{self.name}: onnxruntime {ort.__version__} cannot run on a given CUDA "
                                         f"stream ({exc}); install onnxruntime-gpu >= {MIN_ORT_GPU}") from None
            raise ModelError(f"{self._where()}: onnxruntime could not load the model ({exc})") from None
        running = self.session.get_providers()
        if not running or running[0] != CUDA_EP:
            raise BackendUnavailable(f"{self.name}: onnxruntime {ort.__version__} fell back to {running} instead of "
                                     f"{CUDA_EP}; its CUDA/cuDNN libraries did not load (check the onnxruntime-gpu "
                                     "build's CUDA major version against the driver and the installed cuDNN)")
        check_stream_in_use(self.session, self._compute.handle, ort.__version__)
        self._run_options = ort.RunOptions()
        if not self.synchronize_run:
            self._run_options.add_run_config_entry("disable_synchronize_execution_providers", "1")
        self._ort = ort
        return self._specs()

    def _specs(self) -> tuple[list[TensorSpec], list[TensorSpec], int]:
        first = self.session.get_inputs()[0].shape[0]
        fixed = isinstance(first, int) and first > 0  # a batch fixed in the ONNX wins over max_batch
        low, high = (first, first) if fixed else (1, self.max_batch)
        if self.cuda.cuda_graph:
            low = high  # a captured graph replays one shape: every batch is padded to the maximum
        inputs = [TensorSpec(n.name, (high, *_static_dims(n, "input")), _dtype(n, "input"))
                  for n in self.session.get_inputs()]
        outputs = [TensorSpec(n.name, (high, *_static_dims(n, "output")), _dtype(n, "output"))
                   for n in self.session.get_outputs()]
        return inputs, outputs, low

    def _bind_slots(self, slots: list[Slot]) -> None:
        for slot in slots:
            started, done = CudaEvent(), CudaEvent()
            self._events += [started, done]
            slot.state.update(binding=self.session.io_binding(), started=started, done=done, bound_batch=0,
                              run_options=self._slot_run_options(slot.index))

    def _slot_run_options(self, index: int) -> Any:
        """The shared run options, or with CUDA graphs one set per slot naming that slot's graph."""
        if not self.cuda.cuda_graph:
            return self._run_options
        options = self._ort.RunOptions()
        if not self.synchronize_run:
            options.add_run_config_entry("disable_synchronize_execution_providers", "1")
        options.add_run_config_entry("gpu_graph_id", str(index + 1))  # each slot's buffers: its own graph
        return options

    def _close_backend(self) -> None:
        """Session first (its handles use our stream), then a context-wide synchronise, then stream and events."""
        for slot in self.pipeline.slots if self.pipeline is not None else []:
            slot.state.pop("binding", None)
            slot.state.pop("run_options", None)
        self.session, self._run_options = None, None
        self.ctx.synchronize()
        for event in self._events:
            event.free()
        if self._compute is not None:
            self._compute.free()
        self._events, self._compute = [], None

    def _input_metadata(self) -> dict[str, TensorMeta]:
        meta = {}
        for node in self.session.get_inputs():
            batch = node.shape[0] if isinstance(node.shape[0], int) and node.shape[0] > 0 else None
            meta[node.name] = TensorMeta(node.name, _dtype(node, "input"), (batch, *_static_dims(node, "input")))
        return meta

    # one batch ------------------------------------------------------------------
    def _execute(self, slot: Slot, batch_n: int) -> None:
        self._compute.wait_for(slot.events["h2d_end"])
        slot.state["started"].record(self._compute)  # compute start on the GPU clock (timelines)
        binding = slot.state["binding"]
        if slot.state["bound_batch"] != batch_n:
            self._bind(binding, slot, batch_n)
            slot.state["bound_batch"] = batch_n
        self.session.run_with_iobinding(binding, slot.state["run_options"])
        slot.state["done"].record(self._compute)
        slot.stream.wait_for(slot.state["done"])

    def _bind(self, binding: Any, slot: Slot, batch_n: int) -> None:
        for spec in self.pipeline.inputs:
            binding.bind_input(spec.name, "cuda", self.device, spec.dtype.type, [batch_n, *spec.shape[1:]],
                               slot.device[spec.name].ptr)
        for spec in self.pipeline.outputs:
            binding.bind_output(spec.name, "cuda", self.device, spec.dtype.type, [batch_n, *spec.shape[1:]],
                                slot.device[spec.name].ptr)

    def _where(self) -> str:
        return "<bytes>" if isinstance(self.model, bytes) else str(self.model)

    def providers(self) -> list[str]:
        """Providers the active session really runs on."""
        self._require_active("providers")
        return self.session.get_providers()

    def describe(self) -> str:
        state = self.session.get_providers()[0] if self.session is not None else "inactive"
        return f"{self.name} ({state}, max batch {self.max_batch}, {self.num_slots} slots)"
