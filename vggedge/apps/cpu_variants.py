"""What each CPU variant's speed costs in accuracy: agreement of every runnable variant with FP32."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..errors import ImageError
from ..preprocess import list_images
from ..runtime.base import RunnerOptions
from ..runtime.cpu.features import CpuFeatures, cpu_features
from ..runtime.cpu.variants import current_variant, runner_for, variant_path, variants_for
from ..spec import load_spec_for
from .batches import gather, run_images
from .compare import CompareReport, agreement, load_views


def variant_accuracy(fp32: str | Path, images: str | Path | Sequence[str | Path], *, batch_size: int = 8,
                     augment: bool = False, features: CpuFeatures | None = None) -> CompareReport:
    """Each runnable CPU variant of ``fp32`` against the FP32 variant, on the same images."""
    fp32 = Path(fp32)
    features = features or cpu_features()
    paths = list_images(images) if isinstance(images, (str, Path)) else [Path(p) for p in images]
    if not paths:
        raise ImageError(f"{images}: no images to compare on")
    decoded, failed = load_views(paths, augment)
    spec = load_spec_for(fp32)
    options = RunnerOptions(max_batch=batch_size)
    variants = [v for v in variants_for(features) if current_variant(fp32, v.model) is not None]
    reference = next(v for v in variants if v.key == "fp32")

    def outputs(variant):
        with runner_for(variant, fp32, options) as runner:
            rows, _ = gather(run_images(runner, spec, decoded, batch_size, strict=True, copy=False),
                             spec.output_name, len(decoded))
            return rows.reshape(len(decoded), -1)

    ref = outputs(reference)
    report = CompareReport(len(decoded), f"{fp32.name} (fp32 variant)", spec.output_kind)
    report.failed, report.sources = failed, len(paths)
    for variant in variants:
        if variant is not reference:
            path = variant_path(fp32, variant.model)
            report.variants.append(agreement(variant.key, str(path), "ort-cpu", ref, outputs(variant)))
    return report
