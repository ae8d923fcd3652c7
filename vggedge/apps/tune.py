"""`vggedge tune`: time each runnable CPU variant of a model on this machine and cache the winner."""
from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError, ModelError
from ..runtime.base import RunnerOptions
from ..runtime.cpu_path import TuneResult, format_table, openvino_note, tune


def run_tune(model: str | Path, *, batch_size: int = 8, seconds: float = 2.0, force: bool = False,
             threads: int | None = None) -> TuneResult:
    """Measure (or read from the cache, unless ``force``) the CPU variants of ``model`` at ``batch_size``."""
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not seconds > 0:
        raise ConfigError(f"tune seconds={seconds!r}: expected a number of seconds > 0")
    if not Path(model).is_file():
        raise ModelError(f"{model}: FP32 ONNX model not found (export one with `vggedge export`)")
    return tune(model, RunnerOptions(max_batch=batch_size, threads=threads), seconds=float(seconds), force=force)


def format_report(model: str | Path, result: TuneResult) -> str:
    """The table, and what `precision="auto"` will now run."""
    lines = [f"{model}: CPU variants on {result.key.cpu}"] + format_table(result)
    note = openvino_note()
    if note:
        lines.append(f"  {note}")
    lines.append(f"precision=auto will run {result.winner} (override: VGGEDGE_CPU_VARIANT=<variant>; "
                 "VGGEDGE_TUNE=0 uses the feature-detection order)")
    return "\n".join(lines)
