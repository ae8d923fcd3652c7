"""One check for every count, size and duration option, shared by the Python API and the CLI.

Applications call these at their API boundary, so ``--batch-size 0`` on the
command line and ``Classifier(batch_size=0)`` give the same ConfigError.
(Runner options are checked by :class:`vggedge.runtime.base.RunnerOptions`.)
"""
from __future__ import annotations

import math
from typing import Any

from .errors import ConfigError


def count(name: str, value: Any, *, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum``; ConfigError naming the option otherwise (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name}={value!r}: expected an integer >= {minimum}")
    return value


def seconds(name: str, value: Any, *, allow_zero: bool = False) -> float:
    """``value`` as a finite float > 0 (or >= 0 with ``allow_zero``); ConfigError otherwise."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name}={value!r}: expected a number of seconds {bound}")
    return float(value)


def positive(name: str, value: Any, unit: str = "") -> float:
    """``value`` as a finite float > 0 (a size such as --workspace-gb); ConfigError otherwise."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value <= 0:
        raise ConfigError(f"{name}={value!r}: expected a number > 0{' ' + unit if unit else ''}")
    return float(value)
