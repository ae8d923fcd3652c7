"""Calibrated INT8: an explicitly quantized (Q/DQ) ONNX written by onnxruntime's static quantization.

The TensorRT style (symmetric int8, zero points exactly 0, per-channel weights on
the output-channel axis, float biases, dedicated Q/DQ pairs) is what TensorRT 8.5
to 11 accepts, and onnxruntime's CPU provider runs the same file. Calibration
reads images through :func:`vggedge.preprocess.preprocess`, the inference path.
"""
from __future__ import annotations

import contextlib
import hashlib
import inspect
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..errors import CalibrationError, ConfigError, ModelError
from ..model.weights.base import file_sha256
from ..preprocess import list_images, preprocess
from ..spec import ModelSpec, load_spec_for, spec_path_for

log = logging.getLogger(__name__)
METHODS = ("minmax", "entropy", "percentile")
MIN_REPRESENTATIVE = 100
QUANTIZED_OPS = ["Conv", "Gemm", "MatMul", "MaxPool"]


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
        """Feeds preprocessed batches: ``get_next()`` returns ``{input: batch}`` or None at the end."""

        def __init__(self, paths: Sequence[Path], spec: ModelSpec, batch_size: int) -> None:
            self.paths, self.spec, self.batch_size = list(paths), spec, batch_size
            self.position = 0

        def get_next(self):
            if self.position >= len(self.paths):
                return None
            chunk = self.paths[self.position:self.position + self.batch_size]
            self.position += self.batch_size
            return {self.spec.input_name: preprocess(chunk, self.spec)}

        def __len__(self) -> int:
            return len(self.paths)

        def rewind(self) -> None:
            self.position = 0

    return ImageCalibrationReader


def image_reader(paths: Sequence[Path], spec: ModelSpec, batch_size: int = 1):
    """A onnxruntime ``CalibrationDataReader`` over images, through the inference preprocessing."""
    return _reader_class()(paths, spec, batch_size)


@dataclass(frozen=True)
class Int8Result:
    """What quantization wrote and whether the calibration came from the cache."""

    path: Path
    method: str
    style: str
    images: int
    calib_sha256: str
    cache_path: Path | None
    cache_hit: bool


def quantize_int8(src: str | Path, calib: str | Path, dst: str | Path | None = None, *, method: str = "minmax",
                  style: QdqStyle = TENSORRT, cache_dir: str | Path | None = None, batch_size: int = 1,
                  percentile: float = 99.999, limit: int | None = None) -> Int8Result:
    """Calibrate an FP32 model on an image folder and write ``<stem>.int8.onnx`` + spec.

    The calibration ranges are cached under ``cache_dir`` keyed by model hash,
    calibration-set hash and method, so a rebuild does not recalibrate.
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    if method not in METHODS:
        raise ConfigError(f"calibration method {method!r} is unknown; choose one of {METHODS}")
    src = Path(src)
    spec = load_spec_for(src)
    if spec.precision != "fp32":
        raise ModelError(f"{src}: INT8 calibration needs the FP32 model, got a {spec.precision} one")
    calib_set = calibration_set(calib, spec, limit=limit)
    dst = Path(dst) if dst else src.with_name(f"{src.stem}.int8{'' if style is TENSORRT else '-' + style.name}.onnx")
    cache_path = _cache_path(src, calib_set, method, percentile, style, cache_dir)
    hit = cache_path is not None and cache_path.is_file()
    reader = image_reader(calib_set.paths, spec, _batch_for(spec, batch_size))
    log.info("INT8 (%s style, %s): %s on %d images from %s%s", style.name, method, src.name, len(calib_set.paths),
             calib_set.folder, " (cached calibration)" if hit else "")
    kwargs: dict = {"calibration_data_reader": reader}
    if cache_path is not None:
        if not hit:
            calibrate(src, reader, method, percentile, style.activation_symmetric, cache_path)
        kwargs = {"calibration_data_reader": None, "calibration_cache_path": cache_path}
    tmp = dst.with_name(dst.name + ".tmp")
    with _without_preprocessing_advice():
        quantize_static(
            model_input=str(src), model_output=str(tmp), quant_format=QuantFormat.QDQ,
            op_types_to_quantize=QUANTIZED_OPS, per_channel=style.per_channel, reduce_range=style.reduce_range,
            activation_type=getattr(QuantType, style.activation_type),
            weight_type=getattr(QuantType, style.weight_type), nodes_to_quantize=None, nodes_to_exclude=None,
            use_external_data_format=False, calibrate_method=method_enums()[method],
            extra_options=style.extra_options(method, percentile), **kwargs)
    os.replace(tmp, dst)
    details = {"method": method, "style": style.name, "images": len(calib_set.paths),
               "calib_sha256": calib_set.sha256, "calib_folder": str(calib_set.folder)}
    spec.replace(precision="int8", extra={**spec.extra, "calibration": details}).save(spec_path_for(dst))
    return Int8Result(dst, method, style.name, len(calib_set.paths), calib_set.sha256, cache_path, hit)


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


def calibrate(src: Path, reader, method: str, percentile: float, symmetric: bool, cache_path: Path) -> None:
    """Run onnxruntime's calibrator and write its ranges to ``cache_path`` in onnxruntime's cache format.

    Done here rather than inside ``quantize_static`` so entropy and percentile get
    2048 histogram bins (``quantize_static`` leaves entropy at 128, which makes it
    pick the same thresholds as minmax).
    """
    import tempfile

    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    options = {"symmetric": symmetric, "moving_average": False}
    if method == "entropy":
        options.update(num_bins=2048, num_quantized_bins=128)
    elif method == "percentile":
        options.update(num_bins=2048, percentile=percentile)
    with tempfile.TemporaryDirectory(prefix="vggedge-calib-") as tmp:
        calibrator = create_calibrator(src, QUANTIZED_OPS, augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                                       calibrate_method=method_enums()[method], use_external_data_format=False,
                                       extra_options=options)
        calibrator.collect_data(reader)
        save_tensors_data(calibrator.compute_data(), cache_path)


def _batch_for(spec: ModelSpec, batch_size: int) -> int:
    return spec.fixed_batch or batch_size


def _cache_path(src: Path, calib_set: CalibrationSet, method: str, percentile: float, style: QdqStyle,
                cache_dir: str | Path | None) -> Path | None:
    from onnxruntime.quantization import quantize_static

    if "calibration_cache_path" not in inspect.signature(quantize_static).parameters:
        log.warning("this onnxruntime cannot cache calibration ranges (needs 1.31+): every build recalibrates")
        return None
    folder = Path(cache_dir) if cache_dir else src.parent / "calibration-cache"
    folder.mkdir(parents=True, exist_ok=True)
    tag = f"{method}-p{percentile:g}" if method == "percentile" else method
    tag += "-sym" if style.activation_symmetric else "-asym"
    return folder / f"{file_sha256(src)[:16]}-{calib_set.sha256[:16]}-{tag}.json"
