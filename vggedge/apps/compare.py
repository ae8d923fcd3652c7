"""`vggedge compare`: how far FP16 and INT8 variants drift from FP32 on an image set."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np

from ..errors import ConfigError, ImageError, VggEdgeError
from ..preprocess import list_images, read_image
from .classify import infer_images
from ..runtime.select import select_runner
from ..spec import load_spec_for


@dataclass
class VariantStats:
    """Agreement of one variant with the reference, over all images."""

    name: str
    model: str
    backend: str
    top1_agreement: float
    top5_overlap: float
    cosine_min: float
    cosine_mean: float
    max_abs_diff: float
    mean_abs_diff: float


@dataclass
class CompareReport:
    """Per-variant statistics against the reference (the first model given)."""

    images: int
    reference: str
    output_kind: str
    variants: list[VariantStats] = field(default_factory=list)

    def below(self, min_top1: float) -> list[VariantStats]:
        """Variants whose top-1 agreement is under ``min_top1`` (a fraction, 0-1)."""
        return [v for v in self.variants if v.top1_agreement < min_top1]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def views(image: np.ndarray) -> Iterable[np.ndarray]:
    """The image, its mirror, and five 80% crops (corners and centre): 7 deterministic views."""
    h, w = image.shape[:2]
    ch, cw = int(h * 0.8), int(w * 0.8)
    yield image
    yield cv2.flip(image, 1)
    for top, left in ((0, 0), (0, w - cw), (h - ch, 0), (h - ch, w - cw), ((h - ch) // 2, (w - cw) // 2)):
        yield image[top:top + ch, left:left + cw]


def load_views(paths: Sequence[Path], augment: bool) -> list[np.ndarray]:
    """Decode images once (and expand them into views when ``augment``)."""
    images = [read_image(p) for p in paths]
    return [v for img in images for v in views(img)] if augment else images


def run_model(model: str | Path, images: Sequence[np.ndarray], backend: str, batch_size: int) -> tuple[np.ndarray, str]:
    """All outputs of one model over the images, through its own spec's preprocessing."""
    spec = load_spec_for(model)
    selection = select_runner(model, backend)
    with selection.runner as runner:
        outputs = infer_images(runner, spec, images, batch_size)
    return outputs.reshape(len(images), -1), selection.backend


def agreement(name: str, model: str, backend: str, ref: np.ndarray, out: np.ndarray) -> VariantStats:
    """Top-1 agreement, mean top-5 overlap, cosine similarity and absolute differences."""
    if ref.shape != out.shape:
        raise ConfigError(f"{model}: output shape {out.shape} differs from the reference's {ref.shape}")
    top5_ref = np.argsort(-ref, axis=1, kind="stable")[:, :5]
    top5_out = np.argsort(-out, axis=1, kind="stable")[:, :5]
    overlap = np.mean([len(set(a) & set(b)) / top5_ref.shape[1] for a, b in zip(top5_ref, top5_out)])
    cos = np.sum(ref * out, axis=1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1) + 1e-30)
    diff = np.abs(ref.astype(np.float64) - out)
    return VariantStats(name, str(model), backend, float(np.mean(top5_ref[:, 0] == top5_out[:, 0])),
                        float(overlap), float(cos.min()), float(cos.mean()), float(diff.max()), float(diff.mean()))


def compare_models(models: dict[str, str | Path], images: str | Path | Sequence[str | Path], *,
                   backend: str = "auto", batch_size: int = 8, augment: bool = False) -> CompareReport:
    """Run every model on the same images; the first entry of ``models`` is the reference."""
    if len(models) < 2:
        raise ConfigError(f"compare needs a reference and at least one variant; got {list(models)}")
    paths = list_images(images) if isinstance(images, (str, Path)) else [Path(p) for p in images]
    if not paths:
        raise ImageError(f"{images}: no images to compare on")
    decoded = load_views(paths, augment)
    (ref_name, ref_model), *rest = models.items()
    reference, _ = run_model(ref_model, decoded, backend, batch_size)
    report = CompareReport(len(decoded), ref_name, load_spec_for(ref_model).output_kind)
    for name, model in rest:
        out, used = run_model(model, decoded, backend, batch_size)
        report.variants.append(agreement(name, str(model), used, reference, out))
    return report


def check_min_top1(report: CompareReport, min_top1: float) -> None:
    """Raise VggEdgeError naming every variant under the threshold (for pipelines)."""
    failing = report.below(min_top1)
    if failing:
        listed = ", ".join(f"{v.name} {100 * v.top1_agreement:.1f}%" for v in failing)
        raise VggEdgeError(f"top-1 agreement with {report.reference} below {100 * min_top1:.1f}%: {listed}")


def format_report(report: CompareReport) -> str:
    """A table for humans."""
    width = max([len("variant")] + [len(v.name) for v in report.variants]) + 2
    lines = [f"{report.images} images, reference {report.reference} (outputs: {report.output_kind})",
             f"{'variant':<{width}}{'backend':<10}{'top-1 agr':>10}{'top-5 ovl':>10}{'cos min':>9}{'cos mean':>9}"
             f"{'max |d|':>11}{'mean |d|':>11}"]
    for v in report.variants:
        lines.append(f"{v.name:<{width}}{v.backend:<10}{100 * v.top1_agreement:>9.1f}%{100 * v.top5_overlap:>9.1f}%"
                     f"{v.cosine_min:>9.4f}{v.cosine_mean:>9.4f}{v.max_abs_diff:>11.4g}{v.mean_abs_diff:>11.4g}")
    return "\n".join(lines)
