"""`vggedge tune`: time each runnable CPU variant of a model on this machine, at batch 1 and at the app's batch
size (and the call sizes in between, runtime/cpu/tune.py), and cache the winner of each."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..errors import ConfigError, ModelError
from ..runtime.base import RunnerOptions
from ..runtime.cpu_path import TuneResult, format_table, openvino_note, tune


def run_tune(model: str | Path, *, batch_size: int = 8, seconds: float = 2.0, force: bool = False,
             threads: int | None = None) -> list[TuneResult]:
    """Measure (or read from the cache, unless ``force``) the CPU variants of ``model`` at batch 1 and at
    ``batch_size``: one table per batch size, smallest first."""
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not seconds > 0:
        raise ConfigError(f"tune seconds={seconds!r}: expected a number of seconds > 0")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"tune batch_size={batch_size!r}: expected an integer >= 1")
    if not Path(model).is_file():
        raise ModelError(f"{model}: FP32 ONNX model not found (export one with `vggedge export`)")
    return [tune(model, RunnerOptions(max_batch=batch, threads=threads), seconds=float(seconds), force=force)
            for batch in sorted({1, batch_size})]


def format_report(model: str | Path, results: TuneResult | Sequence[TuneResult]) -> str:
    """The tables, and what `precision="auto"` will now run at each batch size."""
    results = [results] if isinstance(results, TuneResult) else list(results)
    lines = [f"{model}: CPU variants on {results[0].key.cpu}"]
    for result in results:
        lines += format_table(result)
    note = openvino_note()
    if note:
        lines.append(f"  {note}")
    for result in results:
        micro = result.micro_batch()
        how = f" as calls of {micro} rows" if micro < result.key.batch else ""
        lines.append(f"precision=auto at batch {result.key.batch} will run {result.winner}{how}")
    lines.append("(override: VGGEDGE_CPU_VARIANT=<variant>; VGGEDGE_TUNE=0 uses the feature-detection order)")
    return "\n".join(lines)
