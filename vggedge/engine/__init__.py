"""TensorRT engines: flags per version (pure), the identity sidecar, and the thin build/load layer.

Nothing here imports ``tensorrt`` at import time; :func:`build_engine` and
:func:`load_engine` import it when called and raise BackendUnavailable without it.
"""
from __future__ import annotations

from .build import LoadedEngine, build_engine, gpu_identity, load_engine, tensorrt_version
from .flags import (PRECISIONS, BuildPlan, TrtVersion, builder_flags, calibrator_available, make_plan,
                    network_flags, parse_version, supports_version_compatible)
from .identity import (EngineIdentity, check_identity, engine_filename, rebuild_command, sidecar_path)

__all__ = [
    "PRECISIONS", "BuildPlan", "EngineIdentity", "LoadedEngine", "TrtVersion", "build_engine", "builder_flags",
    "calibrator_available", "check_identity", "engine_filename", "gpu_identity", "load_engine", "make_plan",
    "network_flags", "parse_version", "rebuild_command", "sidecar_path", "supports_version_compatible",
    "tensorrt_version",
]
