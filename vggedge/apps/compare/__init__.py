"""`vggedge compare`: how far FP16 and INT8 variants drift from FP32 on an image set."""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ...checks import count
from ...errors import ConfigError, ImageError, VggEdgeError
from ...model.labels import labels_for
from ...precision.agreement import NEAR_TIE, measure, shared_images
from ...preprocess import list_images, read_image
from ...runtime.base import RunnerOptions
from ...runtime.select import Selection, select_runner
from ..batches import gather, run_images
from ...precision.views import augmented_views

log = logging.getLogger(__name__)
#: flips listed in the table for humans (all of them are in the JSON)
FLIPS_SHOWN = 20


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
    #: views whose top-1 agrees, and the 95% Wilson interval of the agreement (fractions)
    top1_agree: int = 0
    top1_low: float = 0.0
    top1_high: float = 1.0
    #: KL(reference || variant) in nats, over the views
    kl_mean: float = 0.0
    kl_max: float = 0.0
    #: every flipped view: {"view", "ref_top1", "ref_margin", "out_top1", "out_margin"} (labels too)
    flips: list[dict] = field(default_factory=list)
    #: per reference class, for models with few classes: {"index", "label", "views", "agree"}
    per_class: list[dict] = field(default_factory=list)
    #: reference views whose runner-up is within NEAR_TIE of the top-1 (log-score), and how many flipped
    near_ties: int = 0
    near_tie_flips: int = 0
    #: how the variant's file was evaluated on the CPU (issue 22: fused kernels or unfused Q/DQ), "" elsewhere
    evaluation: str = ""


@dataclass
class CompareReport:
    """Per-variant statistics against the reference (the first model given)."""

    images: int
    reference: str
    output_kind: str
    variants: list[VariantStats] = field(default_factory=list)
    #: images that could not be read: {"image": path, "error": reason}; the others were compared
    failed: list[dict[str, str]] = field(default_factory=list)
    #: image files given (``images`` counts views: 84 per readable file with augment)
    sources: int = 0
    #: calibration folders the evaluation images were checked against (by decoded content)
    calibration: list[str] = field(default_factory=list)
    #: evaluation images that are also calibration images: {"image", "calibration_image"}
    overlap: list[dict[str, str]] = field(default_factory=list)

    def below(self, min_top1: float) -> list[VariantStats]:
        """Variants whose top-1 agreement is under ``min_top1`` (a fraction, 0-1)."""
        return [v for v in self.variants if v.top1_agreement < min_top1]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def load_named_views(paths: Sequence[Path], augment: bool, *, strict: bool = False
                     ) -> tuple[list[str], list[np.ndarray], list[dict[str, str]]]:
    """Decode images once; with ``augment`` each becomes the 84 documented views of :mod:`.views`.

    Returns (view names ``file`` or ``file#view``, views, unreadable images as
    ``{"image", "error"}``); ``strict=True`` raises the first ImageError instead.
    """
    names, decoded, failed = [], [], []
    for path in paths:
        try:
            image = read_image(path)
        except ImageError as exc:
            if strict:
                raise
            failed.append({"image": str(path), "error": str(exc)})
            continue
        if augment:
            for view, array in augmented_views(image):
                names.append(f"{Path(path).name}#{view}")
                decoded.append(array)
        else:
            names.append(Path(path).name)
            decoded.append(image)
    return names, decoded, failed


def load_views(paths: Sequence[Path], augment: bool, *, strict: bool = False
               ) -> tuple[list[np.ndarray], list[dict[str, str]]]:
    """Decoded views (see :func:`load_named_views`) and the unreadable images."""
    _, decoded, failed = load_named_views(paths, augment, strict=strict)
    return decoded, failed


def run_selection(selection: Selection, images: Sequence[np.ndarray]) -> np.ndarray:
    """All outputs of a selected runner over the decoded images, with the spec of the file that runs."""
    spec = selection.require_spec()  # an engine's comes from its sidecar, a variant's from its own
    with selection.runner as runner:  # views from run(copy=False), copied once into one array by gather()
        outputs, _ = gather(run_images(runner, spec, images, selection.options.max_batch, strict=True, copy=False),
                            spec.output_name, len(images))
    return outputs.reshape(len(images), -1)


def run_model(model: str | Path, images: Sequence[np.ndarray], backend: str, batch_size: int
              ) -> tuple[np.ndarray, str]:
    """All outputs of one model over the decoded images, through ``Runner.run()``, and the backend that ran."""
    selection = select_runner(model, backend, options=RunnerOptions(max_batch=batch_size))  # fixed batch: planned
    return run_selection(selection, images), selection.backend


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


def agreement(name: str, model: str, backend: str, ref: np.ndarray, out: np.ndarray,
              views: Sequence[str] | None = None, output_kind: str = "probabilities",
              labels: Sequence[str] | None = None) -> VariantStats:
    """Top-1 agreement with its Wilson interval, flips, KL, top-5 overlap, cosine and absolute differences."""
    if ref.shape != out.shape:
        raise ConfigError(f"{model}: output shape {out.shape} differs from the reference's {ref.shape}")
    views = list(views) if views is not None else [str(i) for i in range(len(ref))]
    top5_ref = np.argsort(-ref, axis=1, kind="stable")[:, :5]
    top5_out = np.argsort(-out, axis=1, kind="stable")[:, :5]
    overlap = np.mean([len(set(a) & set(b)) / top5_ref.shape[1] for a, b in zip(top5_ref, top5_out)])
    cos = np.sum(ref * out, axis=1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1) + 1e-30)
    diff = np.abs(ref.astype(np.float64) - out)
    stats = measure(ref, out, views, output_kind=output_kind, labels=labels)
    label = (lambda i: labels[i]) if labels else str
    flips = [{**asdict(f), "ref_label": label(f.ref_top1), "out_label": label(f.out_top1)} for f in stats.flips]
    return VariantStats(name, str(model), backend, stats.top1, float(overlap), float(cos.min()), float(cos.mean()),
                        float(diff.max()), float(diff.mean()), stats.agree, stats.low, stats.high, stats.kl_mean,
                        stats.kl_max, flips, [asdict(c) for c in stats.per_class], stats.near_ties,
                        stats.near_tie_flips)


def calibration_folders(selections: Sequence[Selection]) -> list[Path]:
    """The calibration folders recorded in the specs of the files that run (INT8 artefacts record theirs)."""
    folders = []
    for selection in selections:
        calibration = selection.spec.extra.get("calibration") if selection.spec is not None else None
        recorded = calibration.get("calib_folder") if isinstance(calibration, dict) else None
        if recorded and Path(recorded).is_dir() and Path(recorded) not in folders:
            folders.append(Path(recorded))
    return folders


def check_disjoint(paths: Sequence[Path], calibration: Sequence[Path], *, allow_overlap: bool = False
                   ) -> list[dict[str, str]]:
    """Evaluation images that are calibration images too (same decoded pixels, any name).

    Refused with a ConfigError naming them; with ``allow_overlap`` a loud warning instead.
    """
    calib_paths = [p for folder in calibration for p in list_images(folder)]
    pairs = [{"image": str(e), "calibration_image": str(c)} for e, c in shared_images(paths, calib_paths)]
    if pairs:
        listed = "; ".join(f"{p['image']} = {p['calibration_image']}" for p in pairs[:10])
        more = f" (and {len(pairs) - 10} more)" if len(pairs) > 10 else ""
        message = (f"{len(pairs)} of {len(paths)} evaluation images are also calibration images, so the "
                   f"agreement would flatter the INT8 model: {listed}{more}. Evaluate on images calibration never "
                   "saw (the repository's eval/), or pass allow_overlap (`--allow-overlap`) to only warn")
        if not allow_overlap:
            raise ConfigError(message)
        log.warning("WARNING: %s", message)
    return pairs


def compare_models(models: dict[str, str | Path], images: str | Path | Sequence[str | Path], *,
                   backend: str = "auto", batch_size: int = 8, augment: bool = False,
                   strict: bool = False, calibration: Sequence[str | Path] = (),
                   allow_overlap: bool = False) -> CompareReport:
    """Run every model on the same images; the first entry of ``models`` (name -> path) is the reference.

    Unreadable images are reported in ``report.failed`` and left out for every
    model (``strict=True`` raises the first instead). The images are checked
    against the ``calibration`` folders and those recorded in the models'
    sidecars: shared images are refused (``allow_overlap``: warned about).
    """
    count("batch_size", batch_size)
    if len(models) < 2:
        raise ConfigError(f"compare needs a reference and at least one variant; got {list(models)}")
    paths = list_images(images) if isinstance(images, (str, Path)) else [Path(p) for p in images]
    if not paths:
        raise ImageError(f"{images}: no images to compare on")
    options = RunnerOptions(max_batch=batch_size)
    selections = {name: select_runner(model, backend, options=options) for name, model in models.items()}
    folders = list(dict.fromkeys([Path(c) for c in calibration] + calibration_folders(list(selections.values()))))
    overlap = check_disjoint(paths, folders, allow_overlap=allow_overlap)
    names, decoded, failed = load_named_views(paths, augment, strict=strict)
    if not decoded:
        raise ImageError(f"{images}: none of the {len(paths)} images could be read; first: {failed[0]['error']}")
    (ref_name, chosen), *rest = selections.items()
    reference, spec = run_selection(chosen, decoded), chosen.require_spec()
    labels = labels_for(spec.labels, reference.shape[1]) if spec.output_kind != "features" else None
    report = CompareReport(len(decoded), ref_name, spec.output_kind, failed=failed, sources=len(paths),
                           calibration=[str(f) for f in folders], overlap=overlap)
    for name, selection in rest:
        out = run_selection(selection, decoded)
        report.variants.append(agreement(name, str(models[name]), selection.backend, reference, out, names,
                                         spec.output_kind, labels))
        if selection.backend == "ort-cpu":
            report.variants[-1].evaluation = _cpu_evaluation(selection)
    return report


def _cpu_evaluation(selection: Selection) -> str:
    """How the ``ort-cpu`` runner evaluates its file here, with the ISA (runtime/cpu/saturation.py)."""
    from ...runtime.cpu_path import isa_line

    return f"{selection.runner.report().get('evaluation') or 'onnxruntime CPU'}; {isa_line()}"


def check_min_top1(report: CompareReport, min_top1: float) -> None:
    """Raise VggEdgeError naming every variant under the threshold (for pipelines)."""
    failing = report.below(min_top1)
    if failing:
        listed = ", ".join(f"{v.name} {100 * v.top1_agreement:.1f}%" for v in failing)
        raise VggEdgeError(f"top-1 agreement with {report.reference} below {100 * min_top1:.1f}%: {listed}")


def format_report(report: CompareReport) -> str:
    """A table for humans, then each variant's flips (the first FLIPS_SHOWN) and per-class agreement."""
    width = max([len("variant")] + [len(v.name) for v in report.variants]) + 2
    lines = [f"{report.images} images, reference {report.reference} (outputs: {report.output_kind})",
             f"{'variant':<{width}}{'backend':<10}{'top-1 agr':>10}{'95% interval':>16}{'flips':>7}{'top-5 ovl':>10}"
             f"{'cos min':>9}{'cos mean':>9}{'KL mean':>10}{'max |d|':>11}{'mean |d|':>11}"]
    for v in report.variants:
        interval = f"{100 * v.top1_low:.1f}-{100 * v.top1_high:.1f}%"
        lines.append(f"{v.name:<{width}}{v.backend:<10}{100 * v.top1_agreement:>9.1f}%{interval:>16}"
                     f"{len(v.flips):>7}{100 * v.top5_overlap:>9.1f}%{v.cosine_min:>9.4f}{v.cosine_mean:>9.4f}"
                     f"{v.kl_mean:>10.3g}{v.max_abs_diff:>11.4g}{v.mean_abs_diff:>11.4g}")
    lines += [f"{v.name} evaluated as: {v.evaluation}" for v in report.variants if v.evaluation]
    for v in report.variants:
        if v.flips:
            lines.append(f"{v.name}: {len(v.flips)} flipped (view: reference top-1 margin -> {v.name} top-1 margin); "
                         f"{v.near_tie_flips} of them near-ties (the reference has {v.near_ties} views whose "
                         f"runner-up is within {NEAR_TIE:g} of the top-1 in log-score)")
        for f in v.flips[:FLIPS_SHOWN]:
            lines.append(f"  {f['view']}: {f['ref_label']} {f['ref_margin']:.3g} -> {f['out_label']} "
                         f"{f['out_margin']:.3g}")
        if len(v.flips) > FLIPS_SHOWN:
            lines.append(f"  ... {len(v.flips) - FLIPS_SHOWN} more (all in --json)")
        if v.per_class:
            lines.append(f"{v.name} per class: " + ", ".join(
                f"{c['label']} {c['agree']}/{c['views']}" for c in v.per_class))
    if report.overlap:
        lines.append(f"WARNING: {len(report.overlap)} evaluation images are calibration images too")
    lines += [f"FAILED {f['image']}: {f['error']}" for f in report.failed]
    return "\n".join(lines)
