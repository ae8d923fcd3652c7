"""The runner contract shared by every backend (TensorRT, onnxruntime CUDA, onnxruntime CPU).

A runner is cheap to construct and touches no device until :meth:`Runner.activate`.
``infer`` checks names, dtypes and shapes here, before the backend hook runs.
Outputs may be views of buffers the runner reuses: copy them to keep them past
the next call.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from ..errors import InputError, VggEdgeError


@dataclass(frozen=True)
class TensorMeta:
    """Name, dtype and shape of one input; ``None`` marks a dynamic dimension."""

    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...]

    def check(self, array: np.ndarray) -> None:
        """Raise InputError naming the tensor if ``array`` does not fit."""
        if array.dtype != self.dtype:
            raise InputError(f"input {self.name!r}: dtype {array.dtype}, expected {self.dtype}")
        if array.ndim != len(self.shape) or any(
            want is not None and want != got for want, got in zip(self.shape, array.shape)
        ):
            raise InputError(f"input {self.name!r}: shape {tuple(array.shape)}, expected {self.shape_text()}")

    def shape_text(self) -> str:
        """``(N, 3, 224, 224)`` with N for dynamic dimensions."""
        return "(" + ", ".join("N" if d is None else str(d) for d in self.shape) + ")"


class Runner(ABC):
    """Base of every backend runner: ``with runner: runner.infer({name: array})``."""

    #: registry name, e.g. "ort-cpu"
    name = "runner"

    def __init__(self) -> None:
        self._active = False
        self._meta: dict[str, TensorMeta] | None = None

    # lifecycle -----------------------------------------------------------
    def activate(self) -> "Runner":
        """Allocate everything once (sessions, contexts, buffers, streams)."""
        if not self._active:
            self._activate()
            self._active = True
        return self

    def deactivate(self) -> None:
        """Release what :meth:`activate` allocated; safe to call twice."""
        if self._active:
            self._active = False
            self._deactivate()

    def __enter__(self) -> "Runner":
        return self.activate()

    def __exit__(self, *exc: object) -> None:
        self.deactivate()

    @property
    def active(self) -> bool:
        return self._active

    # inference -----------------------------------------------------------
    def input_metadata(self) -> dict[str, TensorMeta]:
        """Inputs by name, with dynamic dimensions as None."""
        self._require_active("input_metadata")
        if self._meta is None:
            self._meta = self._input_metadata()
        return self._meta

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch: ``{input name: array}`` -> ``{output name: array}``."""
        self._require_active("infer")
        meta = self.input_metadata()
        missing = sorted(set(meta) - set(feed))
        extra = sorted(set(feed) - set(meta))
        if missing or extra:
            raise InputError(f"{self.name}: inputs missing {missing}, unexpected {extra}; expected {sorted(meta)}")
        for name, tensor_meta in meta.items():
            tensor_meta.check(np.asarray(feed[name]))
        return self._infer(feed)

    def describe(self) -> str:
        """A short human description (backend, provider, precision)."""
        return self.name

    def _require_active(self, what: str) -> None:
        if not self._active:
            raise VggEdgeError(f"{self.name}: {what}() called before activate(); use `with runner:`")

    # backend hooks --------------------------------------------------------
    @abstractmethod
    def _activate(self) -> None: ...

    @abstractmethod
    def _deactivate(self) -> None: ...

    @abstractmethod
    def _input_metadata(self) -> dict[str, TensorMeta]: ...

    @abstractmethod
    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...
