"""`vggedge compare`: how far FP16 and INT8 variants drift from FP32 on an image set."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np

from ..checks import count
from ..engine.registry import artefact_spec
from ..errors import ConfigError, ImageError, VggEdgeError
from ..preprocess import list_images, read_image
from ..runtime.base import RunnerOptions
from ..runtime.select import select_runner
from .batches import gather, run_images


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
    #: images that could not be read: {"image": path, "error": reason}; the others were compared
    failed: list[dict[str, str]] = field(default_factory=list)
    #: image files given (``images`` counts views: 7 per readable file with augment)
    sources: int = 0

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


def load_views(paths: Sequence[Path], augment: bool, *, strict: bool = False
               ) -> tuple[list[np.ndarray], list[dict[str, str]]]:
    """Decode images once (expanded into views when ``augment``); unreadable ones are listed, not fatal.

    ``strict=True`` raises the first unreadable image's ImageError instead.
    """
    images, failed = [], []
    for path in paths:
        try:
            images.append(read_image(path))
        except ImageError as exc:
            if strict:
                raise
            failed.append({"image": str(path), "error": str(exc)})
    return ([v for img in images for v in views(img)] if augment else images), failed


def run_model(model: str | Path, images: Sequence[np.ndarray], backend: str, batch_size: int
              ) -> tuple[np.ndarray, str]:
    """All outputs of one model over the decoded images, through ``Runner.run()`` and its spec's preprocessing."""
    spec = artefact_spec(model)
    options = RunnerOptions(max_batch=spec.fixed_batch or batch_size)
    selection = select_runner(model, backend, options=options)
    spec = artefact_spec(selection.artefact or model)  # an engine's spec comes from its sidecar
    with selection.runner as runner:  # views from run(copy=False), copied once into one array by gather()
        outputs, _ = gather(run_images(runner, spec, images, batch_size, strict=True, copy=False),
                                 spec.output_name, len(images))
    return outputs.reshape(len(images), -1), selection.backend


def unique_names(paths: Sequence[str | Path]) -> list[str]:
    """Short display names for model paths, unique among them: the file name, with parent folders as needed.

    ``a/vgg16.onnx`` and ``b/vgg16.onnx`` -> ``a/vgg16.onnx``, ``b/vgg16.onnx``; the same path twice gets ``#2``.
    """
    parts = [Path(p).parts or (str(p),) for p in paths]
    depth = [1] * len(parts)
    names = [str(Path(*p[-1:])) for p in parts]
    while True:  # give colliding names one more parent folder until they differ (or run out of folders)
        grown = False
        for i, name in enumerate(names):
            if names.count(name) > 1 and depth[i] < len(parts[i]):
                depth[i] += 1
                grown = True
        names = [str(Path(*p[-d:])) for p, d in zip(parts, depth)]
        if not grown:
            break
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return out


def name_models(items: Sequence[str]) -> dict[str, str]:
    """``NAME=PATH`` or ``PATH`` items -> {display name: path}; plain paths get unique names by path."""
    plain = [item for item in items if "=" not in item]
    auto = iter(unique_names(plain))
    models: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        name, path = (name, path) if sep else (next(auto), item)
        if name in models:
            raise ConfigError(f"model name {name!r} is given twice ({models[name]} and {path}); "
                              "name them NAME=PATH")
        models[name] = path
    return models


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
                   backend: str = "auto", batch_size: int = 8, augment: bool = False,
                   strict: bool = False) -> CompareReport:
    """Run every model on the same images; the first entry of ``models`` (name -> path) is the reference.

    Unreadable images are reported in ``report.failed`` and left out for every
    model (``strict=True`` raises the first instead).
    """
    count("batch_size", batch_size)
    if len(models) < 2:
        raise ConfigError(f"compare needs a reference and at least one variant; got {list(models)}")
    paths = list_images(images) if isinstance(images, (str, Path)) else [Path(p) for p in images]
    if not paths:
        raise ImageError(f"{images}: no images to compare on")
    decoded, failed = load_views(paths, augment, strict=strict)
    if not decoded:
        raise ImageError(f"{images}: none of the {len(paths)} images could be read; first: {failed[0]['error']}")
    (ref_name, ref_model), *rest = models.items()
    reference, _ = run_model(ref_model, decoded, backend, batch_size)
    report = CompareReport(len(decoded), ref_name, artefact_spec(ref_model).output_kind, failed=failed,
                           sources=len(paths))
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
    lines += [f"FAILED {f['image']}: {f['error']}" for f in report.failed]
    return "\n".join(lines)
