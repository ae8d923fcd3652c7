"""What each CPU variant's speed costs in accuracy: agreement of every runnable variant with FP32."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ...errors import ImageError
from ...preprocess import list_images
from ...runtime.base import RunnerOptions
from ...runtime.cpu_path import CpuFeatures, variant_runners
from ...spec import load_spec_for
from ..batches import gather, run_images
from . import CompareReport, agreement, load_views


def variant_accuracy(fp32: str | Path, images: str | Path | Sequence[str | Path], *, batch_size: int = 8,
                     augment: bool = False, features: CpuFeatures | None = None) -> CompareReport:
    """Each runnable CPU variant of ``fp32`` against the FP32 variant, on the same images."""
    fp32 = Path(fp32)
    paths = list_images(images) if isinstance(images, (str, Path)) else [Path(p) for p in images]
    if not paths:
        raise ImageError(f"{images}: no images to compare on")
    decoded, failed = load_views(paths, augment)
    spec = load_spec_for(fp32)
    variants = variant_runners(fp32, RunnerOptions(max_batch=batch_size), features)

    def outputs(runner):
        with runner:
            rows, _ = gather(run_images(runner, spec, decoded, batch_size, strict=True, copy=False),
                             spec.output_name, len(decoded))
            return rows.reshape(len(decoded), -1)

    ref = outputs(next(runner for key, _, runner in variants if key == "fp32"))
    report = CompareReport(len(decoded), f"{fp32.name} (fp32 variant)", spec.output_kind)
    report.failed, report.sources = failed, len(paths)
    for key, path, runner in variants:
        if key != "fp32":
            report.variants.append(agreement(key, str(path), "ort-cpu", ref, outputs(runner)))
    return report
