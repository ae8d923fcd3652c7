"""The main job: export VGG16, prepare what this machine runs, classify the sample photographs."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..env import check as check_environment
from ..errors import ImageError
from ..model.export import export_vgg16
from ..model.labels import Prediction
from ..model.vgg16 import VGG16Options
from ..model.weights import download as dl
from ..model.weights import file_sha256, is_synthetic
from ..paths import CALIB_DIR, ENGINES_DIR
from ..preprocess import list_images
from ..spec import ModelSpec, spec_path_for
from ..runtime.cpu import prepare_variants
from ..runtime.select import probe_ort_cuda, probe_trt
from .classify import Classifier, Timings

log = logging.getLogger(__name__)
DEFAULT_OUT = ENGINES_DIR / "demo"


@dataclass
class DemoReport:
    """What the demo did and measured."""

    weights: str
    random_weights: bool
    model: Path
    backend: str
    skipped: list[tuple[str, str]]
    results: list[tuple[Path, list[Prediction]]] = field(default_factory=list)
    preprocess_ms_per_image: float = 0.0
    infer_ms_per_batch: list[float] = field(default_factory=list)
    batch_size: int = 1


def find_cached_weights() -> Path | None:
    """A verified published weight file in the user's cache, if any."""
    folder = dl.cache_dir() / "weights"
    for entry in dl.REGISTRY.values():
        path = folder / entry.filename
        if path.is_file():
            try:
                dl.verify_file(path, entry)
            except Exception as exc:  # a corrupt cache entry is reported, then skipped
                log.warning("ignoring cached %s: %s", path, exc)
                continue
            return path
    return None


def prepare_model(weights: str | Path | None, out_dir: Path, seed: int = 0) -> tuple[Path, bool]:
    """Export (or reuse) the demo ONNX model; returns its path and whether the weights are random."""
    source = weights or find_cached_weights()
    is_random = source is None or is_synthetic(source)
    source = source or f"normalised:{seed}"
    if is_random:
        log.warning("*** NO PRETRAINED WEIGHTS: using deterministic RANDOM weights (%s, standardised on the sample photos). The labels printed "
                    "below are MEANINGLESS. Run `vggedge weights download keras` on a machine with internet, "
                    "or pass --weights FILE. ***", source)
    onnx_path = out_dir / "vgg16.onnx"
    wanted = str(source) if is_random else file_sha256(source)
    if onnx_path.exists() and spec_path_for(onnx_path).exists():
        spec = ModelSpec.load(spec_path_for(onnx_path))
        if wanted in (spec.weights_source, spec.weights_sha256):
            log.info("reusing %s (built from the same weights)", onnx_path)
            return onnx_path, is_random
    options = VGG16Options(include_rescaling=False, include_top=True, num_classes=1000)
    export_vgg16(source, onnx_path, options)
    return onnx_path, is_random


def run_demo(weights: str | Path | None = None, images: str | Path | None = None, *,
             out_dir: str | Path | None = None, backend: str = "auto", top_k: int = 5,
             batch_size: int = 4, seed: int = 0) -> DemoReport:
    """Export VGG16, select a backend and classify a folder of photographs."""
    check_environment()  # a bad VGGEDGE_* override is refused before the export and INT8 builds
    folder = Path(images) if images else CALIB_DIR
    paths = list_images(folder)
    if not paths:
        raise ImageError(f"{folder}: no images found (expected .jpg/.png files)")
    model, is_random = prepare_model(weights, Path(out_dir) if out_dir else DEFAULT_OUT, seed)
    if backend in ("auto", "ort-cpu") and probe_trt() and probe_ort_cuda():
        prepare_variants(model, CALIB_DIR)  # the CPU will run: write its INT8 files (cached)
    with Classifier(model, backend, batch_size=batch_size, precision="auto") as clf:
        clf.classify(paths[:batch_size], k=top_k)  # warm-up, not reported
        clf.timings = Timings()
        predictions = clf.classify(paths, k=top_k)
        report = DemoReport(str(weights or clf.spec.weights_source), is_random, model,
                            clf.runner.describe(), clf.selection.skipped, batch_size=batch_size)
        report.results = list(zip(paths, predictions))
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
    infer = np.asarray(report.infer_ms_per_batch)
    if infer.size:
        per_image = infer.sum() / max(1, len(report.results))
        lines.append(f"latency: preprocess {report.preprocess_ms_per_image:.1f} ms/image, inference median "
                     f"{np.median(infer):.1f} ms per batch of {report.batch_size} "
                     f"({per_image:.1f} ms/image, {1000 / per_image:.1f} images/s)")
    return "\n".join(lines)
