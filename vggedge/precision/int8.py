"""Calibrated INT8: an explicitly quantized (Q/DQ) ONNX written by onnxruntime's static quantization.

The TensorRT style (symmetric int8, zero points exactly 0, per-channel weights on
the output-channel axis, float biases, dedicated Q/DQ pairs) is what TensorRT 8.5
to 11 accepts, and onnxruntime's CPU provider runs the same file. Calibration
reads images through :func:`vggedge.preprocess.preprocess`, the inference path.
"""
from __future__ import annotations

import contextlib
import hashlib
import itertools
import math
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..atomic import artefact_lock, check_target, private_workdir
from ..errors import CalibrationError, ConfigError, ImageError, ModelError
from ..catalogue import file_sha256
from ..preprocess import list_images, preprocess, read_image
from . import calib_cache
from .calib_views import PhotoViews, view_indices
from ..spec import ModelSpec, load_spec_for, spec_path_for

log = logging.getLogger(__name__)
METHODS = ("minmax", "entropy", "percentile")
MIN_REPRESENTATIVE = 100
QUANTIZED_OPS = ["Conv", "Gemm", "MatMul", "MaxPool"]
#: images per onnxruntime ``collect_data`` call (12 photos: one call, as before views were added)
COLLECT_IMAGES = 16


@dataclass(frozen=True)
class QdqStyle:
    """The quantization settings written into the Q/DQ model (all passed to onnxruntime explicitly)."""

    name: str
    activation_type: str = "QInt8"
    weight_type: str = "QInt8"
    activation_symmetric: bool = True
    weight_symmetric: bool = True
    per_channel: bool = True
    reduce_range: bool = False
    #: weights stored as int8 initializers -> DequantizeLinear (a quarter of the size); False keeps FP32
    #: weights -> QuantizeLinear -> DequantizeLinear, for TensorRT 8.x (see engine/flags.py)
    int8_weights: bool = True
    extra: dict = field(default_factory=dict)

    def extra_options(self, method: str, percentile: float) -> dict:
        opts = {"ActivationSymmetric": self.activation_symmetric, "WeightSymmetric": self.weight_symmetric,
                "QuantizeBias": False, "DedicatedQDQPair": True, "AddQDQPairToWeight": not self.int8_weights,
                "CalibMovingAverage": False, **self.extra}
        if method == "percentile":
            opts["CalibPercentile"] = percentile
        return opts


#: What TensorRT accepts (see shared notes): symmetric, zero points 0, per-channel weights, float biases.
TENSORRT = QdqStyle("tensorrt")
#: onnxruntime's CPU guidance: uint8 asymmetric activations, int8 symmetric per-channel weights.
CPU = QdqStyle("cpu", activation_type="QUInt8", activation_symmetric=False)
#: The same for x86 CPUs without VNNI, where u8*s8 products can saturate: 7-bit weights.
CPU_NO_VNNI = QdqStyle("cpu-rr", activation_type="QUInt8", activation_symmetric=False, reduce_range=True)
#: TensorRT's form with FP32 weights behind a Q/DQ pair each (as large as FP32), for TensorRT 8.x.
TENSORRT_FP32_WEIGHTS = QdqStyle("tensorrt-fp32w", int8_weights=False)
STYLES = {s.name: s for s in (TENSORRT, CPU, CPU_NO_VNNI, TENSORRT_FP32_WEIGHTS)}


@dataclass(frozen=True)
class CalibrationSet:
    """Sorted image paths and a hash of their names, bytes and the preprocessing applied to them."""

    folder: Path
    paths: tuple[Path, ...]
    sha256: str


def calibration_set(folder: str | Path, spec: ModelSpec, *, limit: int | None = None) -> CalibrationSet:
    """Collect a calibration folder; refuse an empty one, warn when it is too small to be representative."""
    folder = Path(folder)
    paths = list_images(folder)[:limit] if limit else list_images(folder)
    if not paths:
        raise CalibrationError(f"{folder}: no calibration images found (expected .jpg/.png files); "
                               "point --calib at a folder of photographs like the ones you will classify")
    if len(paths) < MIN_REPRESENTATIVE:
        log.warning("calibration set %s has %d images: too few to be representative (%d+ recommended, "
                    "ideally 500 from your own data); INT8 accuracy may suffer", folder, len(paths), MIN_REPRESENTATIVE)
    digest = hashlib.sha256(repr(spec.preprocessing).encode() + f"{spec.height}x{spec.width}".encode())
    for path in paths:
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(file_sha256(path).encode())
    return CalibrationSet(folder, tuple(paths), digest.hexdigest())


def _reader_class():
    from onnxruntime.quantization import CalibrationDataReader

    class ImageCalibrationReader(CalibrationDataReader):
        """Feeds preprocessed batches: ``get_next()`` returns ``{input: batch}`` or None at the end.

        With ``views`` > 0 each photo is fed as that many augmented views
        (:mod:`.calib_views`) instead of as itself. A fixed-batch model gets its last
        batch padded by repeating the last image (as ``classify`` does); repeats leave
        min/max ranges unchanged.
        """

        def __init__(self, paths: Sequence[Path], spec: ModelSpec, batch_size: int, views: int = 0) -> None:
            self.paths, self.spec, self.batch_size = list(paths), spec, batch_size
            self.items = [(p, v) for p in self.paths for v in range(views)] if views else self.paths
            self.views = PhotoViews(views) if views else None
            self.position = 0

        def get_next(self):
            if self.position >= len(self.items):
                return None
            chunk = self.items[self.position:self.position + self.batch_size]
            self.position += self.batch_size
            if self.spec.fixed_batch and len(chunk) < self.spec.fixed_batch:  # the model takes no other batch
                chunk = chunk + [chunk[-1]] * (self.spec.fixed_batch - len(chunk))
            images = [self.views.view(*item) for item in chunk] if self.views else chunk
            return {self.spec.input_name: preprocess(images, self.spec)}

        def __len__(self) -> int:
            return len(self.items)

        def rewind(self) -> None:
            self.position = 0

    return ImageCalibrationReader


def image_reader(paths: Sequence[Path], spec: ModelSpec, batch_size: int = 1, views: int = 0):
    """A onnxruntime ``CalibrationDataReader`` over images (or ``views`` augmented views of each), through
    the inference preprocessing."""
    return _reader_class()(paths, spec, batch_size, views)


@dataclass(frozen=True)
class Int8Result:
    """What quantization wrote and whether the calibration came from the cache (or the artefact was reused)."""

    path: Path
    method: str
    style: str
    images: int
    calib_sha256: str
    cache_path: Path | None
    cache_hit: bool
    reused: bool = False
    skipped: tuple[str, ...] = ()


def readable_images(calib_set: CalibrationSet, min_images: int | None = None) -> tuple[list[Path], list[str]]:
    """The calibration images that decode, and ``"path: reason"`` for those that do not.

    Unreadable images are skipped with one warning listing them; fewer than
    ``min_images`` readable ones (default: half the set, at least 1) is refused.
    """
    good, bad = [], []
    for path in calib_set.paths:
        try:
            read_image(path)
            good.append(path)
        except ImageError as exc:
            bad.append(str(exc))
    needed = min_images if min_images is not None else max(1, math.ceil(len(calib_set.paths) / 2))
    if bad:
        log.warning("skipping %d unreadable calibration image(s) of %d:\n  %s", len(bad), len(calib_set.paths),
                    "\n  ".join(bad))
    if len(good) < needed:
        raise CalibrationError(f"{calib_set.folder}: only {len(good)} of {len(calib_set.paths)} calibration images "
                               f"are readable; at least {needed} are needed. Unreadable: " + "; ".join(bad))
    return good, bad


def quantize_int8(src: str | Path, calib: str | Path, dst: str | Path | None = None, *, method: str = "minmax",
                  style: QdqStyle = TENSORRT, cache_dir: str | Path | None = None, batch_size: int = 1,
                  percentile: float = 99.999, limit: int | None = None,
                  min_images: int | None = None, nodes_to_exclude: Sequence[str] = (), calib_views: int = 0,
                  bias_correction: bool = False) -> Int8Result:
    """Calibrate an FP32 model on an image folder and write ``<stem>.int8.onnx`` + spec.

    The calibration ranges are cached under ``cache_dir`` keyed by model hash,
    calibration-set hash and method, so a rebuild does not recalibrate. Safe to run
    twice at once (a file lock serialises builds of one artefact; the second reuses
    the first's result), to interrupt, and beside a read-only model: onnxruntime's
    intermediates go to a private folder removed on every exit, and the artefact,
    checked first, is renamed into place complete. ``nodes_to_exclude`` names layers
    left un-quantized (no Q/DQ: mixed precision, see :mod:`.mixed`). ``calib_views`` > 0
    calibrates on that many augmented views of each photo (:mod:`.calib_views`);
    ``bias_correction`` then corrects the quantized layers' float biases against the
    FP32 model on the same calibration data (:mod:`.bias_correction`). Both are part
    of the artefact's reuse key; the views count is part of the range cache's key.
    """
    if method not in METHODS:
        raise ConfigError(f"calibration method {method!r} is unknown; choose one of {METHODS}")
    if calib_views:
        view_indices(calib_views)  # refuses a count outside 1..84 before any work
    src = Path(src)
    spec = load_spec_for(src)
    if spec.precision != "fp32":
        raise ModelError(f"{src}: INT8 calibration needs the FP32 model, got a {spec.precision} one")
    calib_set = calibration_set(calib, spec, limit=limit)
    dst = Path(dst) if dst else src.with_name(f"{src.stem}.int8{'' if style is TENSORRT else '-' + style.name}.onnx")
    check_target(dst, "INT8 model")
    key = {"method": method, "style": style.name, "calib_sha256": calib_set.sha256, "source_sha256": file_sha256(src),
           "percentile": percentile if method == "percentile" else None,
           "excluded": sorted(nodes_to_exclude) or None, "calib_views": calib_views or None,
           "bias_correction": bool(bias_correction) or None}
    log.info("INT8: building %s from %s (%d calibration images in %s)", dst, src, len(calib_set.paths), calib_set.folder)
    with artefact_lock(dst):
        done = _reusable(dst, key, calib_set)
        if done is not None:
            log.info("INT8: %s is up to date (same model, images and method); reusing it", dst)
            return done
        with private_workdir(dst.parent, "int8-") as work:
            return _quantize(src, spec, calib_set, dst, work, key, style=style, cache_dir=cache_dir,
                             batch_size=batch_size, percentile=percentile, min_images=min_images)


def _quantize(src: Path, spec: ModelSpec, calib_set: CalibrationSet, dst: Path, work: Path, key: dict, *,
              style: QdqStyle, cache_dir, batch_size: int, percentile: float, min_images: int | None) -> Int8Result:
    """Calibrate (or read the cache) and quantize inside ``work``; check, then rename into place."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    method = key["method"]
    model_in = _private_link(src, work)  # onnxruntime writes <model>-inferred.onnx beside the path it is given
    folder = Path(cache_dir) if cache_dir else dst.parent / "calibration-cache"
    views = key["calib_views"] or 0
    cache_path = calib_cache.entry_path(folder, key["source_sha256"], calib_set.sha256,
                                        _tag(method, percentile, style, views)) if calib_cache.supported() else None
    batch, paths = _batch_for(spec, batch_size), None
    if cache_path is None:
        log.warning("this onnxruntime cannot cache calibration ranges (needs 1.31+): every build recalibrates")
        paths, skipped = readable_images(calib_set, min_images)
        kwargs: dict = {"calibration_data_reader": image_reader(paths, spec, batch, views)}
        hit, used = False, len(paths)
    else:
        folder.mkdir(parents=True, exist_ok=True)
        with artefact_lock(cache_path):
            hit = calib_cache.usable(cache_path, method)
            if not hit:
                paths, skipped = readable_images(calib_set, min_images)
                calibrate(model_in, image_reader(paths, spec, batch, views), method, percentile,
                          style.activation_symmetric, cache_path, work=work, skipped=skipped, images=len(paths))
            used, skipped = calib_cache.recorded(cache_path, len(calib_set.paths))
        kwargs = {"calibration_data_reader": None, "calibration_cache_path": cache_path}
    log.info("INT8 (%s style, %s): %s on %d images from %s%s", style.name, method, src.name, used,
             calib_set.folder, " (cached calibration)" if hit else "")
    out = work / dst.name
    with _without_preprocessing_advice():
        quantize_static(
            model_input=str(model_in), model_output=str(out), quant_format=QuantFormat.QDQ,
            op_types_to_quantize=QUANTIZED_OPS, per_channel=style.per_channel, reduce_range=style.reduce_range,
            activation_type=getattr(QuantType, style.activation_type),
            weight_type=getattr(QuantType, style.weight_type), nodes_to_quantize=None,
            nodes_to_exclude=key["excluded"],
            use_external_data_format=False, calibrate_method=method_enums()[method],
            extra_options=style.extra_options(method, percentile), **kwargs)
    if key["bias_correction"]:
        from .bias_correction import correct_file

        paths = paths or readable_images(calib_set, min_images)[0]
        corrected = correct_file(out, model_in, image_reader(paths, spec, batch, views))
        key = {**key, "bias_corrected_layers": len(corrected)}  # recorded, not compared on reuse
    if style is TENSORRT:
        _check_tensorrt_rules(out, dst)
    details = {**key, "images": used, "calib_folder": str(calib_set.folder), "skipped": list(skipped)}
    os.replace(out, dst)  # the model first: a sidecar never describes a file that is not there yet
    spec.replace(precision="int8", extra={**spec.extra, "calibration": details}).save(spec_path_for(dst))
    return Int8Result(dst, method, style.name, used, calib_set.sha256, cache_path, hit, skipped=tuple(skipped))


def _check_tensorrt_rules(model: Path, dst: Path) -> None:
    """Refuse a Q/DQ model TensorRT would reject, before it reaches its final name."""
    import onnx

    from .qdq_check import tensorrt_violations

    problems = tensorrt_violations(onnx.load(str(model), load_external_data=False))
    if problems:
        raise ModelError(f"{dst}: the Q/DQ model breaks TensorRT's rules (not written): " + "; ".join(problems))


def _reusable(dst: Path, key: dict, calib_set: CalibrationSet) -> Int8Result | None:
    """The existing artefact when its sidecar says it was built from the same model, images and method."""
    if not dst.is_file() or not spec_path_for(dst).is_file():
        return None
    try:
        done = load_spec_for(dst).extra.get("calibration", {})
    except ModelError:
        return None
    if any(done.get(k) != v for k, v in key.items()):
        return None
    return Int8Result(dst, key["method"], key["style"], int(done.get("images", len(calib_set.paths))),
                      calib_set.sha256, None, True, reused=True, skipped=tuple(done.get("skipped", ())))


def _private_link(src: Path, work: Path) -> Path:
    """``src`` as seen from the private folder (a symlink, else a copy), so intermediates land there."""
    link = work / src.name
    try:
        link.symlink_to(src.resolve())
    except OSError:
        shutil.copyfile(src, link)
    return link


@contextlib.contextmanager
def _without_preprocessing_advice():
    """Drop onnxruntime's root-logger advice to run its pre-processing script, only while quantizing.

    (Our graphs come out of the ONNX checker with static shapes; the advice is about symbolic shape
    inference for models that lack them.)
    """
    advice = logging.Filter()
    advice.filter = lambda record: not str(record.msg).startswith("Please consider")
    root = logging.getLogger()
    root.addFilter(advice)
    for handler in root.handlers:
        handler.addFilter(advice)
    try:
        yield
    finally:
        root.removeFilter(advice)
        for handler in root.handlers:
            handler.removeFilter(advice)


def method_enums() -> dict:
    """Our method names -> onnxruntime's CalibrationMethod (imported lazily)."""
    from onnxruntime.quantization import CalibrationMethod

    return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}


def calibrate(src: Path, reader, method: str, percentile: float, symmetric: bool, cache_path: Path, *,
              work: Path | None = None, skipped: Sequence[str] = (), images: int | None = None) -> None:
    """Run onnxruntime's calibrator and write its ranges to ``cache_path`` in onnxruntime's cache format.

    Done here rather than inside ``quantize_static`` so entropy and percentile get
    2048 histogram bins (``quantize_static`` leaves entropy at 128, which makes it
    pick the same thresholds as minmax). The augmented model goes to ``work`` (a
    private folder; a fresh temporary one when not given). Batches reach the calibrator
    :data:`COLLECT_IMAGES` images at a time: onnxruntime holds every intermediate tensor
    of a ``collect_data`` call in memory (about 110 MB per 224x224 VGG16 image). ``images``: the photo count
    recorded in the cache (default: the reader's length).
    """
    import tempfile

    from onnxruntime.quantization.calibrate import create_calibrator

    options = {"symmetric": symmetric, "moving_average": False}
    if method == "entropy":
        options.update(num_bins=2048, num_quantized_bins=128)
    elif method == "percentile":
        options.update(num_bins=2048, percentile=percentile)
    with contextlib.ExitStack() as stack:
        folder = Path(work) if work else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vggedge-calib-")))
        model = src if work else _private_link(src, folder)
        calibrator = create_calibrator(model, QUANTIZED_OPS, augmented_model_path=str(folder / "augmented.onnx"),
                                       calibrate_method=method_enums()[method], use_external_data_format=False,
                                       extra_options=options)
        batches = iter(reader.get_next, None)
        while chunk := list(itertools.islice(batches, max(1, COLLECT_IMAGES // _batch_rows(reader)))):
            calibrator.collect_data(_Batches(chunk))  # ranges and histograms merge across calls
        calib_cache.write(calibrator.compute_data(), cache_path, len(reader) if images is None else images,
                          list(skipped))


class _Batches:
    """A calibration reader over batches already read."""

    def __init__(self, batches: list) -> None:
        self.batches = iter(batches)

    def get_next(self):
        return next(self.batches, None)


def _batch_rows(reader) -> int:
    return max(1, int(getattr(reader, "batch_size", 1)))


def _batch_for(spec: ModelSpec, batch_size: int) -> int:
    return spec.fixed_batch or batch_size


def _tag(method: str, percentile: float, style: QdqStyle, views: int = 0) -> str:
    tag = f"{method}-p{percentile:g}" if method == "percentile" else method
    return tag + ("-sym" if style.activation_symmetric else "-asym") + (f"-v{views}" if views else "")
