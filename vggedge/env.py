"""vggedge's environment overrides, read and validated in one place.

Every ``VGGEDGE_*`` variable vggedge reads is listed in :data:`VARIABLES` with
its check. :func:`check` validates them all at once; the CLI calls it before
any command starts work, and the library calls it where an override takes
effect (the CPU runner), so a bad value is refused in the first second, by the
API and the CLI alike, with a message naming the variable, its value and what
is accepted. A ``VGGEDGE_*`` name that vggedge does not know is warned about
(usually a typo).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from .errors import ConfigError

log = logging.getLogger(__name__)

#: Every CPU variant key any machine may offer (runtime/cpu/ decides which ones run here).
CPU_VARIANT_KEYS = ("ov-int8", "ov-bf16", "int8", "int8-trt", "fp32")
#: Where images decode: "auto" (the GPU where it can, else the CPU decode pool), "gpu" or "cpu".
DECODERS = ("auto", "gpu", "cpu")
_FLAGS = {"0": False, "1": True}


def _one_of(choices: tuple[str, ...]) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        return None if value in choices else f"expected one of {', '.join(choices)}"
    return check


def _flag(value: str) -> str | None:
    return None if value in _FLAGS else "expected 0 (off) or 1 (on)"


def _folder(value: str) -> str | None:
    path = Path(value).expanduser()
    if path.exists() and not path.is_dir():
        return "expected a folder, but it is an existing file"
    return None


def _nonempty(value: str) -> str | None:
    return None if value.strip() else "expected a path"


@dataclass(frozen=True)
class EnvVar:
    """One environment variable vggedge reads, with the check its value must pass."""

    name: str
    help: str
    check: Callable[[str], str | None]  # None when the value is valid, else what was expected


VARIABLES: dict[str, EnvVar] = {v.name: v for v in (
    EnvVar("VGGEDGE_CPU_VARIANT", "force one CPU variant (wins over tuning and feature detection)",
           _one_of(CPU_VARIANT_KEYS)),
    EnvVar("VGGEDGE_TUNE", "1 (default): time the CPU variants once per machine and model; 0: feature order",
           _flag),
    EnvVar("VGGEDGE_CACHE", "cache folder (default $XDG_CACHE_HOME/vggedge or ~/.cache/vggedge)", _folder),
    EnvVar("VGGEDGE_KERNELS_FATBIN", "compiled CUDA preprocessing kernels", _nonempty),
    EnvVar("VGGEDGE_REDUCED_DECODE", "1: decode large JPEGs at 1/2, 1/4 or 1/8 scale in every app (default 0)",
           _flag),
    EnvVar("VGGEDGE_DECODER", "auto (default): JPEGs decode on the GPU (nvImageCodec) on GPU runners, else on "
           "the CPU decode pool; gpu or cpu to choose", _one_of(DECODERS)),
)}


def problems(environ: Mapping[str, str] | None = None) -> list[str]:
    """One message per invalid ``VGGEDGE_*`` value (empty when all are valid)."""
    environ = os.environ if environ is None else environ
    found = []
    for name, var in VARIABLES.items():
        value = environ.get(name)
        if value is None or value == "":
            continue
        reason = var.check(value)
        if reason:
            found.append(f"environment variable {name}={value!r}: {reason} ({var.help})")
    return found


def check(environ: Mapping[str, str] | None = None) -> None:
    """Raise ConfigError naming every invalid override; warn about unknown ``VGGEDGE_*`` names."""
    environ = os.environ if environ is None else environ
    unknown = sorted(k for k in environ if k.startswith("VGGEDGE_") and k not in VARIABLES)
    for name in unknown:
        log.warning("environment variable %s is not one vggedge reads (known: %s)", name, ", ".join(VARIABLES))
    found = problems(environ)
    if found:
        raise ConfigError("; ".join(found))


def _get(name: str) -> str | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return None
    reason = VARIABLES[name].check(value)
    if reason:
        raise ConfigError(f"environment variable {name}={value!r}: {reason} ({VARIABLES[name].help})")
    return value


def cpu_variant() -> str | None:
    """``VGGEDGE_CPU_VARIANT`` (validated), or None when unset."""
    return _get("VGGEDGE_CPU_VARIANT")


def tune_enabled() -> bool:
    """``VGGEDGE_TUNE``: on unless set to 0. The test suite sets it to 0 (tests/conftest.py)."""
    value = _get("VGGEDGE_TUNE")
    return True if value is None else _FLAGS[value]


def cache_dir() -> Path:
    """``$VGGEDGE_CACHE``, else ``$XDG_CACHE_HOME/vggedge``, else ``~/.cache/vggedge``."""
    explicit = _get("VGGEDGE_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "vggedge"
    return Path.home() / ".cache" / "vggedge"


def reduced_decode() -> bool:
    """``VGGEDGE_REDUCED_DECODE``: off unless set to 1 (read by :func:`vggedge.preprocess.reduced_decode_enabled`)."""
    value = _get("VGGEDGE_REDUCED_DECODE")
    return False if value is None else _FLAGS[value]


def decoder() -> str | None:
    """``VGGEDGE_DECODER`` (validated: auto, gpu or cpu), or None when unset."""
    return _get("VGGEDGE_DECODER")


def decoder_wanted(explicit: str | None = None) -> str:
    """The decoder asked for: ``explicit`` when given (an API argument, ``--decoder``), else
    ``VGGEDGE_DECODER``, else "auto". The one place this order is decided; ConfigError for an unknown value."""
    if explicit is None:
        return decoder() or "auto"
    if explicit not in DECODERS:
        raise ConfigError(f"decoder {explicit!r}: choose one of {', '.join(DECODERS)}")
    return explicit
