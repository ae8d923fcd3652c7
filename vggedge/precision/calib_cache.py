"""The INT8 calibration cache: one JSON entry of activation ranges per (model, image set, method).

Entries are onnxruntime's own cache format (``save_tensors_data``), written under a
temporary name and renamed into place, with a ``vggedge`` key recording which
images were used. Entries are checked on read: a corrupt one (``{}``, truncated
JSON, another method) is reported, moved aside and recomputed, never fatal.
"""
from __future__ import annotations

import inspect
import json
import logging
import time
from pathlib import Path
from typing import Any

from ..atomic import atomic_target

log = logging.getLogger(__name__)


def supported() -> bool:
    """Whether this onnxruntime's ``quantize_static`` can read a calibration cache (1.31+)."""
    from onnxruntime.quantization import quantize_static

    return "calibration_cache_path" in inspect.signature(quantize_static).parameters


def entry_path(folder: Path, model_sha256: str, calib_sha256: str, tag: str) -> Path:
    """``<folder>/<model hash>-<image set hash>-<method tag>.json``."""
    return folder / f"{model_sha256[:16]}-{calib_sha256[:16]}-{tag}.json"


def problem(path: Path, method: str) -> str | None:
    """Why the entry at ``path`` cannot be used for ``method`` (None: it can)."""
    from onnxruntime.quantization.calibrate import TensorsData

    try:
        raw = json.loads(path.read_text())
        data = TensorsData.from_dict(raw)
    except json.JSONDecodeError as exc:
        return f"not valid JSON ({exc})"
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return f"not a calibration cache entry ({type(exc).__name__}: {exc})"
    if not data.data:
        return "it holds no tensor ranges"
    found = getattr(data.calibration_method, "name", str(data.calibration_method)).lower()
    if found != method:
        return f"it was computed with {found}, not {method}"
    return None


def usable(path: Path, method: str) -> bool:
    """True when a valid entry exists; a corrupt one is reported and moved aside (then False)."""
    if not path.is_file():
        return False
    why = problem(path, method)
    if why is None:
        return True
    aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
    path.replace(aside)
    log.warning("calibration cache entry %s is unusable: %s. Moved it aside to %s; recalibrating.", path, why, aside)
    return False


def write(tensors_data: Any, path: Path, used: int, skipped: list[str]) -> None:
    """Save ranges in onnxruntime's format plus what was used, atomically."""
    from onnxruntime.quantization.calibrate import save_tensors_data

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_target(path) as tmp:
        save_tensors_data(tensors_data, tmp)
        payload = json.loads(tmp.read_text())
        payload["vggedge"] = {"images": used, "skipped": skipped}
        tmp.unlink()  # rewritten fresh, so the usual permissions apply (onnxruntime's temp file is 0600)
        tmp.write_text(json.dumps(payload))


def recorded(path: Path, default: int) -> tuple[int, list[str]]:
    """(images used, images skipped) recorded in an entry (``default`` images for entries without the record)."""
    try:
        record = json.loads(path.read_text()).get("vggedge", {})
        return int(record.get("images", default)), [str(s) for s in record.get("skipped", [])]
    except (OSError, ValueError, TypeError, AttributeError):
        return default, []
