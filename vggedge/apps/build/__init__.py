"""`vggedge build`: FP32 ONNX -> FP16 / INT8 ONNX artefacts -> TensorRT engines where TensorRT exists."""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ...checks import count, positive
from ...engine.flags import PRECISIONS, check_batch
from ...engine.registry import record_engine
from ...atomic import TargetError
from ...errors import ConfigError, ModelError
from ...paths import CALIB_DIR, EVAL_DIR
from ...precision.fp16 import write_fp16
from ...precision.int8 import METHODS, Int8Result, quantize_int8
from ...precision.mixed import SELECTIONS
from ...runtime.select import engine_unavailable
from ...signals import sigterm_as_interrupt
from ...spec import load_spec_for

log = logging.getLogger(__name__)


@dataclass
class BuildReport:
    """The ONNX artefact per precision, the engines built, and why none were when TensorRT is absent."""

    onnx: dict[str, Path] = field(default_factory=dict)
    engines: dict[str, Path] = field(default_factory=dict)
    no_engine_reason: str | None = None
    int8: Int8Result | None = None
    #: the INT8 accuracy report (also written beside the artefact) and where it was written
    accuracy: dict | None = None
    accuracy_paths: list[Path] = field(default_factory=list)


@sigterm_as_interrupt()  # `kill` cleans up as Ctrl-C does: no half-written artefacts
def precision_artefacts(model: str | Path, precisions: Sequence[str], *, calib: str | Path | None = None,
                        method: str = "minmax", fp16_io: bool = False,
                        out_dir: str | Path | None = None) -> BuildReport:
    """Write the FP16 and INT8 (TensorRT-style Q/DQ) ONNX files beside the FP32 model (or in ``out_dir``)."""
    model = Path(model)
    spec = load_spec_for(model)
    if spec.precision != "fp32":
        raise ModelError(f"{model}: build starts from the FP32 ONNX, got a {spec.precision} one")
    unknown = sorted(set(precisions) - set(PRECISIONS))
    if unknown or not precisions:
        raise ConfigError(f"precision {unknown or precisions} is unknown; choose from {PRECISIONS}")
    if method not in METHODS:
        raise ConfigError(f"calibration method {method!r} is unknown; choose one of {METHODS}")
    with _hint_out_dir(out_dir):
        return _write_variants(model, precisions, calib, method, fp16_io, out_dir)


def _write_variants(model: Path, precisions: Sequence[str], calib, method: str, fp16_io: bool,
                    out_dir: str | Path | None) -> BuildReport:
    report = BuildReport()
    if "fp32" in precisions:
        report.onnx["fp32"] = model
    if "fp16" in precisions:
        report.onnx["fp16"] = write_fp16(model, _beside(model, "fp16", out_dir), fp16_io=fp16_io)
    if "int8" in precisions:  # checked against TensorRT's Q/DQ rules before it is renamed into place
        report.int8 = quantize_int8(model, calib or CALIB_DIR, _beside(model, "int8", out_dir), method=method)
        report.onnx["int8"] = report.int8.path
    return report


@contextlib.contextmanager
def _hint_out_dir(out_dir: str | Path | None):
    """A model folder that cannot be written: say how to write the variants elsewhere."""
    try:
        yield
    except TargetError as exc:
        if out_dir is not None:
            raise
        raise TargetError(f"{exc}; to build beside a read-only model, pass out_dir (`vggedge build --out DIR`)") \
            from None


def _beside(model: Path, precision: str, out_dir: str | Path | None) -> Path | None:
    """Where a variant goes: beside the model, or in ``out_dir`` (for a read-only model folder)."""
    return Path(out_dir) / f"{model.stem}.{precision}.onnx" if out_dir else None


@sigterm_as_interrupt()
def build(model: str | Path, precisions: Sequence[str] = ("fp32", "fp16", "int8"), *,
          calib: str | Path | None = None, method: str = "minmax", batch: tuple[int, int, int] = (1, 8, 32),
          out_dir: str | Path | None = None, fp16_io: bool = False, workspace_gb: float = 2.0,
          evaluation: str | Path | None = EVAL_DIR, eval_augment: bool = True, allow_overlap: bool = False,
          min_agreement: float | None = None, max_kept_layers: int = 4,
          kept_selection: str = "predicted") -> BuildReport:
    """Write every precision's ONNX; build TensorRT engines for them when TensorRT and a GPU are present.

    The INT8 model is measured against FP32 on ``evaluation`` (photos calibration never
    saw; 84 views each with ``eval_augment``) and ``<stem>.accuracy.json`` is written beside
    it. ``min_agreement`` (a percentage) keeps the most sensitive layers un-quantized, up
    to ``max_kept_layers``, until top-1 agreement reaches it: ``kept_selection`` "predicted"
    (the cheapest set expected to reach it) or "ranked" (see vggedge.precision.mixed).
    """
    batch = check_batch(batch)
    positive("workspace_gb", workspace_gb, "(GiB)")  # checked before minutes of INT8 calibration
    count("max_kept_layers", max_kept_layers)
    if kept_selection not in SELECTIONS:
        raise ConfigError(f"kept_selection {kept_selection!r} is unknown; choose one of {SELECTIONS}")
    eval_set = _evaluation_first(precisions, calib, evaluation, eval_augment, allow_overlap, min_agreement)
    report = precision_artefacts(model, precisions, calib=calib, method=method, fp16_io=fp16_io, out_dir=out_dir)
    if eval_set is not None and report.int8 is not None:
        from .int8_target import measure_int8

        measure_int8(Path(model), report, eval_set, calib or CALIB_DIR, method, min_agreement, max_kept_layers,
                     kept_selection)
    reason = engine_unavailable()
    if reason is not None:
        report.no_engine_reason = reason
        log.warning("no TensorRT engine built: %s. The ONNX artefacts above run on onnxruntime "
                    "(`vggedge compare`, `vggedge classify --model ...`).", reason)
        return report
    from ...engine.build import build_engine

    out = Path(out_dir) if out_dir else Path(model).parent
    calibration = None
    if report.int8 is not None:
        calibration = {"method": report.int8.method, "calib_sha256": report.int8.calib_sha256,
                       "images": report.int8.images}
    for precision, onnx_path in report.onnx.items():
        report.engines[precision] = build_engine(
            onnx_path, out, precision=precision, batch=batch, workspace_bytes=int(workspace_gb * (1 << 30)),
            timing_cache_path=out / "timing.cache", onnx_precision=precision, spec=load_spec_for(onnx_path),
            calibration=calibration if precision == "int8" else None, log=log.info)
        record_engine(model, report.engines[precision])  # so classify/bench/compare find it again
    if report.accuracy is not None and "int8" in report.engines:  # the engine keeps the evidence too
        from ..accuracy import write_accuracy

        report.accuracy_paths.append(write_accuracy(report.engines["int8"], report.accuracy))
    return report


def _evaluation_first(precisions: Sequence[str], calib, evaluation, augment: bool, allow_overlap: bool,
                      min_agreement: float | None):
    """The evaluation views, loaded and checked disjoint from calibration before minutes of calibration."""
    if min_agreement is not None and not 0 < min_agreement <= 100:
        raise ConfigError(f"min_agreement={min_agreement}: expected a percentage in (0, 100]")
    if evaluation is not None and Path(evaluation) == EVAL_DIR and not EVAL_DIR.is_dir():
        log.warning("no INT8 accuracy report: the default evaluation folder %s is missing (an installed "
                    "package without the repository's photos); pass evaluation (`--eval DIR`)", EVAL_DIR)
        evaluation = None
    if "int8" not in precisions or evaluation is None:
        if min_agreement is not None:
            raise ConfigError("min_agreement needs an INT8 build with an evaluation set "
                              "(`--precision int8`, not `--eval none`)")
        return None
    from ..accuracy import evaluation_set

    return evaluation_set(evaluation, augment=augment, calibration=[calib or CALIB_DIR], allow_overlap=allow_overlap)


def format_report(report: BuildReport) -> str:
    """Human-readable summary."""
    lines = [f"{p:>5} ONNX: {path}" for p, path in report.onnx.items()]
    if report.int8 is not None:
        r = report.int8
        if r.reused:
            lines.append(f"       INT8: up to date ({r.method} on {r.images} images, same model and images); reused")
        else:
            lines.append(f"       INT8 calibration: {r.method} on {r.images} images "
                         f"({'from cache' if r.cache_hit else 'computed'}; cache {r.cache_path})")
        if r.skipped:
            lines.append(f"       skipped {len(r.skipped)} unreadable calibration image(s): " + "; ".join(r.skipped))
    if report.accuracy is not None:
        from ..accuracy import summary

        lines.append(f"       INT8 accuracy: {summary(report.accuracy)}")
        speed = report.accuracy.get("speed")
        if speed:
            lines.append(f"       speed (ort-cpu, batch {speed['batch']}, inference only, side by side): "
                         f"{speed['mixed_img_s']:.1f} img/s vs {speed['plain_img_s']:.1f} plain INT8 "
                         f"(ratio {speed['ratio']:.2f})")
        lines += [f"       accuracy report: {path}" for path in report.accuracy_paths]
    lines += [f"{p:>5} engine: {path}" for p, path in report.engines.items()]
    if report.no_engine_reason:
        lines.append(f"no TensorRT engine built: {report.no_engine_reason}")
    return "\n".join(lines)
