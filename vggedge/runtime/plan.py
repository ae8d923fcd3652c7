"""What selection decides before any runner exists: the backend, the exact file, its spec, the runner's options.

A backend contributes a planner hook, ``hook(request) -> Choice | str``: the
file it would run for the request and why, with the runner's keyword options,
or the reason it has nothing to run (a skip). :mod:`.select` turns the first
choice into a :class:`Plan`, and a plan into a runner (Polygraphy's loader,
then runner: the loader decides what is loaded, the runner only runs it).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Union

from ..spec import ModelSpec, load_spec_for, missing_spec, spec_path_for
from .base import RunnerOptions


@dataclass(frozen=True)
class PlanRequest:
    """What the caller asked for: a model (ONNX or engine), a precision choice, the runner options."""

    model: Path
    precision: str = "as-given"
    options: RunnerOptions = field(default_factory=RunnerOptions)
    engine: Path | None = None  # an engine the caller chose for the engine backend
    engine_reason: str | None = None  # why the engine backend has nothing to run (overrides the lookup)


@dataclass(frozen=True)
class Choice:
    """One backend's answer: the file it runs, why, its runner's keyword options, and its spec when known."""

    artefact: Path
    why: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    spec: ModelSpec | None = None  # None: read from the artefact's sidecar
    runner: str | None = None  # "module:Class" when not the backend's own runner class (OpenVINO native)
    options: RunnerOptions | None = None  # the request's options as this file runs them (a measured micro-batch)


#: a backend's planner hook: the file it would run for a request, or why it has none
PlannerHook = Callable[[PlanRequest], Union[Choice, str]]


@dataclass
class Plan:
    """Everything selection decided: ``backend`` runs ``artefact`` (whose ``spec`` it is) with these options.

    ``spec`` is None only for a bare ONNX file without a ``.spec.json`` (the runner
    layer can run it; applications need the spec: :meth:`require_spec`).
    """

    backend: str
    artefact: Path
    spec: ModelSpec | None
    options: RunnerOptions
    kwargs: dict[str, Any]
    why: str
    skipped: list[tuple[str, str]] = field(default_factory=list)
    runner: str | None = None  # "module:Class" overriding the backend's runner class

    @property
    def precision(self) -> str | None:
        """The precision of the file that runs (from its spec)."""
        return self.spec.precision if self.spec is not None else None

    def require_spec(self) -> ModelSpec:
        """The spec of the file that runs; ModelError naming the missing sidecar when it has none."""
        return required_spec(self.spec, self.artefact)


def required_spec(spec: ModelSpec | None, artefact: Path | None) -> ModelSpec:
    """``spec``, or the ModelError that names the sidecar ``artefact`` lacks (applications need the spec)."""
    if spec is None:
        raise missing_spec(artefact or "<model>")
    return spec


def spec_if_any(path: Path) -> ModelSpec | None:
    """The spec sidecar of an ONNX file; None when there is none (a malformed one raises)."""
    return load_spec_for(path) if spec_path_for(path).exists() else None


def load_object(path: str) -> Any:
    """The object a ``"module:name"`` path names, imported only now (runner classes, planner hooks)."""
    import importlib

    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)
