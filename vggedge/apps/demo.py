"""The main job: export VGG16, prepare what this machine runs, classify the sample photographs."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..checks import count
from ..env import check as check_environment
from ..errors import ImageError
from ..model.labels import Prediction
from ..model.prepare import DEFAULT_MODEL_DIR, prepare_model
from ..paths import CALIB_DIR
from ..preprocess import list_images
from ..runtime.select import prepare_artefacts
from .classify import Classifier, Timings

log = logging.getLogger(__name__)
DEFAULT_OUT = DEFAULT_MODEL_DIR


@dataclass
class DemoReport:
    """What the demo did and measured; ``failed`` lists (image, reason) for images that could not be read."""

    weights: str
    random_weights: bool
    model: Path
    backend: str
    skipped: list[tuple[str, str]]
    results: list[tuple[Path, list[Prediction]]] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    preprocess_ms_per_image: float = 0.0
    infer_ms_per_batch: list[float] = field(default_factory=list)
    batch_size: int = 1


def run_demo(weights: str | Path | None = None, images: str | Path | None = None, *,
             out_dir: str | Path | None = None, backend: str = "auto", top_k: int = 5,
             batch_size: int = 4, seed: int = 0, strict: bool = False) -> DemoReport:
    """Export VGG16, prepare what the chosen backend runs best, and classify a folder of photographs.

    Unreadable images are listed in ``report.failed`` (``strict=True`` raises the first).
    """
    check_environment()  # a bad VGGEDGE_* override is refused before the export and INT8 builds
    count("top_k", top_k)
    count("batch_size", batch_size)
    folder = Path(images) if images else CALIB_DIR
    paths = list_images(folder)
    if not paths:
        raise ImageError(f"{folder}: no images found (expected .jpg/.png files)")
    model, is_random = prepare_model(weights, Path(out_dir) if out_dir else DEFAULT_OUT, seed)
    # the backend that will run prepares its files first (the CPU's INT8 variants); no backend named here
    prepare_artefacts(model, backend, calib=CALIB_DIR, precision="auto")
    with Classifier(model, backend, batch_size=batch_size, precision="auto") as clf:
        list(clf.classify_iter(paths[:batch_size], k=top_k))  # warm-up, not reported
        clf.timings = Timings()
        report = DemoReport(str(weights or clf.spec.weights_source), is_random, model,
                            clf.runner.describe(), clf.selection.skipped, batch_size=batch_size)
        for result in clf.classify_iter(paths, k=top_k, strict=strict):
            if result.ok:
                report.results.append((result.source, result.predictions))
            else:
                report.failed.append((result.source, str(result.error)))
        t = clf.timings
        report.preprocess_ms_per_image = 1000 * sum(t.preprocess) / max(1, sum(t.images))
        report.infer_ms_per_batch = [1000 * s for s in t.infer]
    return report


def format_report(report: DemoReport) -> str:
    """Human-readable demo output."""
    lines = [f"model: {report.model} ({'RANDOM weights, labels meaningless' if report.random_weights else report.weights})",
             f"backend: {report.backend}"]
    lines += [f"  skipped {name}: {reason}" for name, reason in report.skipped]
    for path, preds in report.results:
        lines.append(f"{path.name}:")
        lines += [f"  {p.score:8.4f}  {p.label} ({p.index})" for p in preds]
    lines += [f"{path.name}: FAILED: {reason}" for path, reason in report.failed]
    infer = np.asarray(report.infer_ms_per_batch)
    if infer.size:
        per_image = infer.sum() / max(1, len(report.results))
        lines.append(f"latency: preprocess {report.preprocess_ms_per_image:.1f} ms/image, inference median "
                     f"{np.median(infer):.1f} ms per batch of {report.batch_size} "
                     f"({per_image:.1f} ms/image, {1000 / per_image:.1f} images/s)")
    return "\n".join(lines)
