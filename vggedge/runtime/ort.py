"""onnxruntime CPU runner (the fallback that runs everywhere, INT8 Q/DQ models included)."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

import numpy as np

from ..errors import BackendUnavailable, ModelError, VggEdgeError
from .base import Runner, RunnerOptions, TensorMeta

if TYPE_CHECKING:
    from .cpu.openvino_ep import OpenVinoOptions

log = logging.getLogger(__name__)
ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
             "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(int32)": np.int32,
             "tensor(int64)": np.int64, "tensor(bfloat16)": None}


@dataclass(frozen=True)
class OrtOptions:
    """Session settings; None leaves onnxruntime's default."""

    intra_op_threads: int | None = None
    inter_op_threads: int | None = 1
    allow_spinning: bool | None = None
    graph_optimization: str = "all"  # disable | basic | extended | all
    execution_mode: str = "sequential"
    config_entries: dict[str, str] = field(default_factory=dict)
    providers: tuple = ("CPUExecutionProvider",)
    #: run on the OpenVINO plugin EP's CPU device with these settings (``providers`` is then unused)
    openvino: OpenVinoOptions | None = None

    def session_options(self):
        """Build ``onnxruntime.SessionOptions`` from these settings."""
        import onnxruntime as ort

        levels = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                  "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                  "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                  "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
        opts = ort.SessionOptions()
        opts.graph_optimization_level = levels[self.graph_optimization]
        opts.execution_mode = (ort.ExecutionMode.ORT_PARALLEL if self.execution_mode == "parallel"
                               else ort.ExecutionMode.ORT_SEQUENTIAL)
        if self.intra_op_threads is not None:
            opts.intra_op_num_threads = self.intra_op_threads
        if self.inter_op_threads is not None:
            opts.inter_op_num_threads = self.inter_op_threads
        if self.allow_spinning is not None:
            opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.allow_spinning else "0")
        for key, value in self.config_entries.items():
            opts.add_session_config_entry(key, value)
        opts.log_severity_level = 3
        if self.openvino is not None:
            from .cpu.openvino_ep import add_cpu_provider

            add_cpu_provider(opts, self.openvino)
        return opts

    @property
    def first_provider(self) -> str:
        """The provider the session is expected to run first."""
        if self.openvino is not None:
            from .cpu.openvino_ep import EP_NAME

            return EP_NAME
        wanted = self.providers[0]
        return wanted[0] if isinstance(wanted, tuple) else wanted


class OrtRunner(Runner):
    """Runs an ONNX file (or bytes) in an onnxruntime session on the providers given."""

    name = "ort-cpu"

    def __init__(self, model: str | Path | bytes, options: OrtOptions | None = None,
                 runner_options: RunnerOptions | None = None, *, note: str | None = None,
                 evaluation: str | None = None, variant: str | None = None) -> None:
        super().__init__(runner_options)
        self.model = model
        self.options = options or OrtOptions()
        self.session = None
        #: one line saying which file runs how and why, when that differs from what was asked (issue 22)
        self.note = note
        #: how the file is evaluated ("onnxruntime CPU kernels, VNNI", "Q/DQ evaluated unfused ...")
        self.evaluation = evaluation
        #: the CPU variant chosen for precision="auto", if any
        self.variant = variant

    def _activate(self) -> None:
        import onnxruntime as ort

        if not isinstance(self.model, bytes) and not Path(self.model).is_file():
            raise ModelError(f"{self.model}: ONNX model file not found")
        source = self.model if isinstance(self.model, bytes) else os.fspath(self.model)
        plugin = self.options.openvino is not None
        providers = None if plugin else list(self.options.providers)  # the plugin comes through the options
        if plugin:
            from .cpu import openvino_ep

            openvino_ep.acquire()  # counted before the session exists: never unregistered under it
        if self.note:
            log.warning("%s", self.note)
        from .cpu.signal_stack import kept_signal_stack

        try:
            with kept_signal_stack():  # the OpenVINO plugin EP compiles here (see cpu/signal_stack.py)
                self.session = ort.InferenceSession(source, self.options.session_options(), providers=providers)
            self._check_providers()
        except VggEdgeError:
            self._deactivate()
            raise
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            self._deactivate()
            where = "<bytes>" if isinstance(self.model, bytes) else self.model
            raise ModelError(f"{where}: onnxruntime could not load the model ({exc})") from None

    def _check_providers(self) -> None:
        wanted = self.options.first_provider
        got = self.session.get_providers()
        if wanted not in got:
            raise BackendUnavailable(f"{self.name}: asked for {wanted} but onnxruntime runs {got}")

    def _deactivate(self) -> None:
        from .cpu.signal_stack import kept_signal_stack

        with kept_signal_stack():
            self.session = None
        if self.options.openvino is not None:
            from .cpu import openvino_ep

            openvino_ep.release()  # after the session is dropped

    def _input_metadata(self) -> dict[str, TensorMeta]:
        meta = {}
        for node in self.session.get_inputs():
            dtype = ORT_TYPES.get(node.type)
            if dtype is None:
                raise ModelError(f"input {node.name!r} has type {node.type}, which vggedge does not feed")
            shape = tuple(d if isinstance(d, int) else None for d in node.shape)
            meta[node.name] = TensorMeta(node.name, np.dtype(dtype), shape)
        return meta

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [o.name for o in self.session.get_outputs()]
        return dict(zip(names, self.session.run(names, dict(feed))))

    def providers(self) -> list[str]:
        """Providers the active session really runs on."""
        self._require_active("providers")
        return self.session.get_providers()

    def report(self) -> dict:
        """The base report plus the CPU variant, the evaluation and the note (None when not set)."""
        return {**super().report(), "variant": self.variant, "evaluation": self.evaluation, "note": self.note}

    def describe(self) -> str:
        active = self.session.get_providers()[0] if self.session is not None else "inactive"
        where = "<bytes>" if isinstance(self.model, bytes) else Path(self.model).name
        return f"{self.name} ({active}, {where})"
