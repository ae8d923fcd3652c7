"""OpenVINO itself (PyPI ``openvino``, ``pip install 'vggedge[openvino]'``) as a CPU runner.

Unlike the onnxruntime plugin EP (openvino_ep.py), which offers no device on
non-Intel CPUs, the native package runs on Intel, AMD and Arm. It reads the same
files as every other runner (FP32, FP16 and INT8 Q/DQ ONNX) and compiles them
for the CPU with:

- ``PERFORMANCE_HINT``: LATENCY at batch 1 or micro-batch 1 (one request, every core on it),
  THROUGHPUT otherwise (OpenVINO's streams, fed by :meth:`run`'s asynchronous
  requests);
- ``INFERENCE_NUM_THREADS`` from ``RunnerOptions.threads`` (None: OpenVINO's choice);
- ``INFERENCE_PRECISION_HINT``: f32, or bf16 for the ``ov-native-bf16`` variant.

``run()`` overlaps preparation with inference through ``slots`` asynchronous
infer requests; results come back in input order.
"""
from __future__ import annotations

import collections
import importlib.util
import logging
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from ...errors import BackendUnavailable, ModelError
from .signal_stack import kept_signal_stack
from ..base import IDLE, BatchOutput, PrepareFn, Runner, RunnerOptions, TensorMeta

log = logging.getLogger(__name__)
PACKAGE = "openvino"
PRECISIONS = ("f32", "bf16")


def installed() -> bool:
    """True when the ``openvino`` package is importable (it is not imported here: that takes a while)."""
    try:
        return importlib.util.find_spec(PACKAGE) is not None
    except (ImportError, ValueError):
        return False


def hint_for(max_batch: int) -> str:
    """LATENCY for single images, THROUGHPUT for batches."""
    return "LATENCY" if max_batch == 1 else "THROUGHPUT"


class OpenVinoRunner(Runner):
    """An ONNX file compiled by OpenVINO for the CPU (see the module docstring)."""

    name = "ov-native"
    backend = "ort-cpu"  # a CPU variant of the ort-cpu backend (chosen by its planner), not a backend of its own

    def __init__(self, model: str | Path, runner_options: RunnerOptions | None = None, *,
                 inference_precision: str = "f32", variant: str | None = None, evaluation: str | None = None) -> None:
        super().__init__(runner_options)
        if inference_precision not in PRECISIONS:
            raise ValueError(f"inference_precision {inference_precision!r}: expected one of {PRECISIONS}")
        self.model = Path(model)
        self.inference_precision = inference_precision
        self.variant, self.evaluation, self.note = variant, evaluation, None
        self._compiled = None
        self._request = None
        self._async: list[Any] = []
        self._split: list[Any] = []
        self._outputs: list[tuple[str, Any]] = []

    @property
    def call_rows(self) -> int:
        """The most rows one backend call gets: the micro-batch when set, else the max batch."""
        return min(self.runner_options.micro_batch or self.runner_options.max_batch, self.runner_options.max_batch)

    def config(self) -> dict[str, str]:
        """The compile properties this runner uses."""
        config = {"PERFORMANCE_HINT": hint_for(self.call_rows),
                  "INFERENCE_PRECISION_HINT": self.inference_precision}
        if self.runner_options.threads is not None:
            config["INFERENCE_NUM_THREADS"] = str(self.runner_options.threads)
        return config

    def _activate(self) -> None:
        if not installed():
            raise BackendUnavailable("OpenVINO is not installed (pip install 'vggedge[openvino]')")
        if not self.model.is_file():
            raise ModelError(f"{self.model}: ONNX model file not found")
        import openvino as ov

        try:
            core = ov.Core()
            with kept_signal_stack():  # see signal_stack.py: OpenVINO swaps this thread's signal stack
                self._compiled = core.compile_model(core.read_model(str(self.model)), "CPU", self.config())
        except RuntimeError as exc:  # OpenVINO raises RuntimeError for unreadable or unsupported models
            raise ModelError(f"{self.model}: OpenVINO could not compile the model ({exc})") from None
        self._request = self._compiled.create_infer_request()
        self._outputs = [(o.any_name, o) for o in self._compiled.outputs]
        streams = int(self._compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        #: THROUGHPUT compiles several streams, each with a share of the cores: one synchronous request would
        #: use one stream, so infer() splits a batch over one request per stream and waits for all of them
        self._split = [self._compiled.create_infer_request() for _ in range(streams)] if streams > 1 else []

    def _deactivate(self) -> None:
        for request in self._async:
            request.wait()
        with kept_signal_stack():  # the compiled model is destroyed here unless something else holds it
            self._async, self._split, self._outputs = [], [], []  # ports hold the compiled model too
            self._request = self._compiled = None

    def _input_metadata(self) -> dict[str, TensorMeta]:
        meta = {}
        for port in self._compiled.inputs:
            shape = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
            meta[port.any_name] = TensorMeta(port.any_name, np.dtype(port.get_element_type().to_dtype()), shape)
        return meta

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = next(iter(feed.values())).shape[0]
        if len(self._split) < 2 or rows < 2:
            result = self._request.infer(dict(feed))
            return {name: result[port] for name, port in self._outputs}
        step = -(-rows // len(self._split))
        used = []
        for request, start in zip(self._split, range(0, rows, step)):
            request.start_async({k: a[start:start + step] for k, a in feed.items()}, share_inputs=False)
            used.append(request)
        for request in used:
            request.wait()
        return {name: np.concatenate([r.get_tensor(port).data for r in used]) for name, port in self._outputs}

    def describe(self) -> str:
        where = self.model.name
        return f"{self.name} (OpenVINO CPU, {self.inference_precision}, {hint_for(self.call_rows)}, {where})"

    def report(self) -> dict[str, Any]:
        return {**super().report(), "variant": self.variant, "evaluation": self.evaluation, "note": self.note,
                "openvino_config": self.config()}

    def _run(self, items: Iterator[Any], prepare: PrepareFn | None, copy: bool) -> Iterator[BatchOutput]:
        """Asynchronous infer requests (``slots`` of them): this thread prepares the next batch while OpenVINO
        runs the ones submitted; results are collected in input order. (Plain requests rather than an
        ``AsyncInferQueue``: its Python callback thread aborted the process at exit in OpenVINO 2026.4.)"""
        if self.runner_options.micro_batch is not None:  # the base loop splits through infer()
            yield from super()._run(items, prepare, copy)
            return
        while len(self._async) < self.runner_options.slots:
            self._async.append(self._compiled.create_infer_request())
        free = list(self._async)
        pending: collections.deque = collections.deque()
        buffers = self._host_buffers() if prepare is not None else None
        try:
            for item in items:
                if item is IDLE:  # the source has nothing yet: hand back what is in flight, oldest first
                    if pending:
                        yield self._collect(pending.popleft(), free)
                    continue
                t0 = time.perf_counter()
                if prepare is None:
                    feed = self._as_feed(item)
                    n = {a.shape[0] for a in feed.values()}.pop()
                else:
                    n = int(prepare(item, buffers))
                    feed = {k: a[:n] for k, a in buffers.items()}
                for name, meta in self.input_metadata().items():
                    meta.check(feed[name])
                prep_s = time.perf_counter() - t0
                if not free:
                    yield self._collect(pending.popleft(), free)
                request = free.pop()
                request.start_async(feed, share_inputs=False)  # inputs copied: the buffers can be refilled
                pending.append((request, item, n, prep_s, time.perf_counter()))
            while pending:
                yield self._collect(pending.popleft(), free)
        finally:
            for request, *_ in pending:
                request.wait()

    def _collect(self, entry: tuple, free: list) -> BatchOutput:
        request, item, n, prep_s, started = entry
        request.wait()
        infer_s = time.perf_counter() - started
        outputs = {name: np.array(request.get_tensor(port).data[:n], copy=True) for name, port in self._outputs}
        free.append(request)
        self.last_times = {**self.last_times, "infer": infer_s}
        return BatchOutput(outputs, n, item, {"prepare": prep_s, "infer": infer_s})


__all__ = ["OpenVinoRunner", "installed", "hint_for", "PRECISIONS"]
