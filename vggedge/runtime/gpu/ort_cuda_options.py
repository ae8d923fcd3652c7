"""onnxruntime CUDA provider settings, built without a GPU (pure; tested on CPUs).

:class:`CudaOptions` is what :class:`~vggedge.runtime.gpu.ort_cuda.OrtCudaRunner`
gives onnxruntime's CUDAExecutionProvider, as typed fields instead of a
string-keyed dict:

- ``prefer_nhwc``: run convolutions in NHWC (tensor-core friendly; measured 1.27x
  on an H200 at FP16). Passed only to onnxruntime-gpu builds that have the NHWC
  kernels (1.20 and later); older builds get nothing rather than an error.
- ``cuda_graph``: capture the model once per slot and replay it (``enable_cuda_graph``,
  one ``gpu_graph_id`` per slot). Needs fixed shapes, so every batch is padded to
  the maximum; off by default, kept only where the GPU check measures it faster.
- ``tf32``: TF32 convolutions and matmuls for FP32 models (onnxruntime's default; off
  for bit-closer parity with the CPU).
- ``conv_algo_search``: "EXHAUSTIVE" (onnxruntime's default), "HEURISTIC" or "DEFAULT".

Quiet by default: onnxruntime logs only fatal messages and cuDNN's own loggers stay
off (``CUDNN_LOGLEVEL_DBG=0``, ``CUDNN_FRONTEND_LOG_INFO=0`` unless already set),
so the dozens of "cudnn_frontend ... No execution plans support the graph" lines of
an FP16 session never reach the terminal. Real failures still surface: they raise
(a session that cannot load, a provider that fell back to the CPU, a failed run).
With vggedge's logger at DEBUG everything is shown again.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace

from ...errors import ConfigError

log = logging.getLogger("vggedge.runtime.gpu.ort_cuda")
ALGO_SEARCH = ("EXHAUSTIVE", "HEURISTIC", "DEFAULT")
NHWC_SINCE = (1, 20)  # pip wheels of onnxruntime-gpu carry the NHWC CUDA kernels from 1.20
GRAPH_SINCE = (1, 18)  # gpu_graph_id (one graph per slot) from 1.18
#: onnxruntime severities: 0 verbose, 1 info, 2 warning, 3 error, 4 fatal
QUIET, CHATTY = 4, 0
CUDNN_QUIET_ENV = {"CUDNN_LOGLEVEL_DBG": "0", "CUDNN_FRONTEND_LOG_INFO": "0"}


def version_tuple(version: str) -> tuple[int, int]:
    """``"1.31.1"`` -> (1, 31); unparsable parts count as 0."""
    parts = []
    for piece in str(version).split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts + [0] * (2 - len(parts)))  # type: ignore[return-value]


@dataclass(frozen=True)
class CudaOptions:
    """Typed CUDA provider options; ``extra`` passes any other provider option through as strings."""

    prefer_nhwc: bool = True
    cuda_graph: bool = False
    tf32: bool | None = None
    conv_algo_search: str | None = None
    log_severity: int | None = None  #: None: fatal only, unless vggedge logs at DEBUG
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.conv_algo_search is not None and self.conv_algo_search not in ALGO_SEARCH:
            raise ConfigError(f"conv_algo_search={self.conv_algo_search!r}: choose one of {', '.join(ALGO_SEARCH)}")
        if self.log_severity is not None and self.log_severity not in range(5):
            raise ConfigError(f"log_severity={self.log_severity!r}: expected 0 (verbose) to 4 (fatal only)")

    def provider_options(self, device: int, stream_handle: int, ort_version: str) -> dict[str, str]:
        """The CUDAExecutionProvider option dict for this onnxruntime version (strings, as it wants them)."""
        version = version_tuple(ort_version)
        options = {"device_id": str(device), "user_compute_stream": str(stream_handle)}
        if self.prefer_nhwc and version >= NHWC_SINCE:
            options["prefer_nhwc"] = "1"
        if self.cuda_graph:
            if version < GRAPH_SINCE:
                raise ConfigError(f"cuda_graph needs onnxruntime-gpu >= {'.'.join(map(str, GRAPH_SINCE))} "
                                  f"(one graph per slot); this is {ort_version}")
            options["enable_cuda_graph"] = "1"
        if self.tf32 is not None:
            options["use_tf32"] = "1" if self.tf32 else "0"
        if self.conv_algo_search is not None:
            options["cudnn_conv_algo_search"] = self.conv_algo_search
        options.update({str(k): str(v) for k, v in self.extra.items()})
        return options

    def severity(self) -> int:
        """onnxruntime log severity: the given one, else all with vggedge at DEBUG, else fatal only."""
        if self.log_severity is not None:
            return self.log_severity
        return CHATTY if log.isEnabledFor(logging.DEBUG) else QUIET

    def quiet_libraries(self) -> dict[str, str]:
        """Set cuDNN's logger variables off where the user has not set them; returns what was set."""
        if self.severity() < QUIET:
            return {}
        applied = {}
        for key, value in CUDNN_QUIET_ENV.items():
            if key not in os.environ:
                os.environ[key] = applied[key] = value
        return applied


def merged(base: CudaOptions | None, provider_options: dict[str, str] | None) -> CudaOptions:
    """``base`` (default :class:`CudaOptions`) with a string ``provider_options`` dict laid over it.

    Known keys set the typed fields (``prefer_nhwc``, ``enable_cuda_graph``, ``use_tf32``,
    ``cudnn_conv_algo_search``); the others pass through in ``extra``.
    """
    base = base or CudaOptions()
    options = dict(provider_options or {})
    kwargs: dict = {}
    if "prefer_nhwc" in options:
        kwargs["prefer_nhwc"] = str(options.pop("prefer_nhwc")) == "1"
    if "enable_cuda_graph" in options:
        kwargs["cuda_graph"] = str(options.pop("enable_cuda_graph")) == "1"
    if "use_tf32" in options:
        kwargs["tf32"] = str(options.pop("use_tf32")) == "1"
    if "cudnn_conv_algo_search" in options:
        kwargs["conv_algo_search"] = options.pop("cudnn_conv_algo_search")
    return replace(base, **kwargs, extra={**base.extra, **options})
