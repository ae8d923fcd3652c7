"""The accuracy report `vggedge build` writes beside each INT8 artefact (``<stem>.accuracy.json``).

It records the top-1 agreement with the FP32 model and its 95% Wilson interval,
the flipped views, the layers kept in high precision, the calibration method and
calibration-set hash, and the evaluation set (folder, views, content hash), so a
user keeps the evidence with the file they ship. `vggedge info --model` shows it.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import ImageError
from ..precision.agreement import Agreement, set_hash
from ..preprocess import list_images
from ..spec import load_spec_for
from .compare import check_disjoint, load_named_views, run_model

SUFFIX = ".accuracy.json"


@dataclass
class EvaluationSet:
    """Decoded evaluation views (84 per photo with ``augment``), named ``photo#view``, and their content hash."""

    folder: Path
    photos: list[Path]
    names: list[str]
    views: list[np.ndarray]
    sha256: str
    augment: bool

    def describe(self) -> dict[str, Any]:
        return {"folder": str(self.folder), "photos": len(self.photos), "views": len(self.views),
                "augment": self.augment, "set_sha256": self.sha256}


def evaluation_set(folder: str | Path, *, augment: bool = True, calibration: Sequence[str | Path] = (),
                   allow_overlap: bool = False) -> EvaluationSet:
    """Load an evaluation folder; refuse it when it shares images with a ``calibration`` folder."""
    photos = list_images(folder)
    if not photos:
        raise ImageError(f"{folder}: no evaluation images (expected .jpg/.png files)")
    check_disjoint(photos, [Path(c) for c in calibration], allow_overlap=allow_overlap)
    names, views, failed = load_named_views(photos, augment)
    if not views:
        raise ImageError(f"{folder}: none of the {len(photos)} evaluation images could be read")
    good = [p for p in photos if str(p) not in {f["image"] for f in failed}]
    return EvaluationSet(Path(folder), good, names, views, set_hash(good), augment)


def evaluate(model: str | Path, eval_set: EvaluationSet, *, batch_size: int = 8) -> np.ndarray:
    """The model's outputs on every evaluation view, the same on any machine (see :func:`run_evaluation`)."""
    return run_evaluation(model, eval_set.views, batch_size)


def run_evaluation(model: str | Path, views: Sequence[np.ndarray], batch_size: int = 8) -> np.ndarray:
    """Outputs on ``views``: a Q/DQ file unfused in float (exact fake quantization, what TensorRT's INT8
    approximates, never the CPU's saturating kernels), a float file on onnxruntime's CPU provider."""
    from ..runtime.base import RunnerOptions
    from ..runtime.cpu_path import unfused_runner
    from .batches import gather, run_images

    spec = load_spec_for(model)
    runner = unfused_runner(model, RunnerOptions(max_batch=spec.fixed_batch or batch_size))
    if runner is None:  # a float file: onnxruntime's CPU provider
        return run_model(model, views, "ort-cpu", batch_size)[0]
    with runner:
        outputs, _ = gather(run_images(runner, spec, views, batch_size, strict=True, copy=False),
                            spec.output_name, len(views))
    return outputs.reshape(len(views), -1)


def evaluation_record(model: str | Path) -> dict[str, str]:
    """What the report says about how ``model`` was evaluated and on which CPU."""
    from ..machine import cpu_name
    from ..runtime.cpu_path import evaluation_name, isa_line

    return {"measured_on": evaluation_name(model), "isa": isa_line(), "cpu": cpu_name()}


def accuracy_report(artefact: str | Path, reference: str | Path, eval_set: EvaluationSet, stats: Agreement, *,
                    high_precision: Sequence[str] = (), extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The report's content: agreement, interval, flips, kept layers, calibration (from the sidecar), evaluation."""
    spec = load_spec_for(artefact)
    calibration = spec.extra.get("calibration", {})
    return {
        "artefact": str(artefact), "reference": str(reference), **evaluation_record(artefact),
        "top1_agreement": stats.top1, "top1_agree": stats.agree, "views": stats.views,
        "top1_interval95": [stats.low, stats.high], "kl_mean": stats.kl_mean, "kl_max": stats.kl_max,
        "near_ties": stats.near_ties, "near_tie_flips": stats.near_tie_flips,
        "flips": [asdict(f) for f in stats.flips],
        "high_precision_layers": list(high_precision),
        "calibration": {"method": calibration.get("method"), "set_sha256": calibration.get("calib_sha256"),
                        "images": calibration.get("images"), "folder": calibration.get("calib_folder"),
                        "percentile": calibration.get("percentile"), "views_per_photo": calibration.get("calib_views"),
                        "bias_correction": bool(calibration.get("bias_correction"))},
        "evaluation": eval_set.describe(), **(extra or {}),
    }


def accuracy_path(artefact: str | Path) -> Path:
    """``m.int8.onnx`` -> ``m.int8.accuracy.json`` (an engine gets its own beside it)."""
    artefact = Path(artefact)
    return artefact.with_name(artefact.stem + SUFFIX)


def write_accuracy(artefact: str | Path, report: dict[str, Any]) -> Path:
    """Write the report beside the artefact (complete or not at all)."""
    path = accuracy_path(artefact)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def load_accuracy(artefact: str | Path) -> dict[str, Any] | None:
    """The report beside an artefact, or None when there is none (or it is unreadable)."""
    path = accuracy_path(artefact)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def summary(report: dict[str, Any]) -> str:
    """One line: agreement, interval, flips, views, kept layers, calibration."""
    low, high = report["top1_interval95"]
    kept = ", ".join(report["high_precision_layers"]) or "none"
    cal = report.get("calibration", {})
    ev = report.get("evaluation", {})
    how = f" [{report['measured_on']}; {report.get('isa', 'ISA not recorded')}]" if report.get("measured_on") else ""
    return (f"top-1 agreement {100 * report['top1_agreement']:.2f}% (95% {100 * low:.1f}-{100 * high:.1f}%), "
            f"{len(report['flips'])} flips ({report.get('near_tie_flips', 0)} near-ties) in {report['views']} views "
            f"of {ev.get('photos')} photos; "
            f"high-precision layers: {kept}; calibration {cal.get('method')} "
            f"(set {str(cal.get('set_sha256'))[:12]}){how}")
