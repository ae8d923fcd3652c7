"""Weights -> ONNX file + ModelSpec sidecar (the first artefact of the flow)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import onnx

from ..atomic import atomic_target, check_target
from ..spec import ModelSpec, Preprocessing, spec_path_for
from ..errors import WeightsError
from .vgg16 import VGG16Options, build_onnx
from .weights import LoadedWeights, archive_config, is_keras_archive, is_synthetic, load_weights

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Exported:
    """Paths of an exported model and its spec."""

    onnx_path: Path
    spec: ModelSpec

    @property
    def spec_path(self) -> Path:
        return spec_path_for(self.onnx_path)


def spec_for(weights: LoadedWeights, options: VGG16Options) -> ModelSpec:
    """The ModelSpec of a graph built from these weights with these options."""
    pre = weights.preprocessing
    if options.include_rescaling:
        pre = _rescaled(pre, weights.source)
    h, w, c = options.input_shape
    if options.include_top:
        kind = "probabilities" if options.classifier_activation == "softmax" else "logits"
    else:
        kind = "features"
    labels = "imagenet" if options.include_top and options.num_classes == 1000 else None
    return ModelSpec(name=options.name, output_name=options.output_name, height=h, width=w, channels=c,
                     output_kind=kind, num_classes=options.num_classes if options.include_top else None,
                     labels=labels, preprocessing=pre, weights_source=weights.source,
                     weights_sha256=weights.sha256)


def _rescaled(pre: Preprocessing, source: str) -> Preprocessing:
    """With include_rescaling the graph divides by 255 itself (as Keras-CV does): feed raw pixels."""
    if not is_synthetic(source) and (pre.scale, pre.mean) != (1.0 / 255.0, (0.0, 0.0, 0.0)):
        log.warning("include_rescaling=True divides pixels by 255 inside the graph, but %s weights expect %s; "
                    "predictions will not match the published accuracy. Export with include_rescaling=False "
                    "to let vggedge's preprocessing apply what the weights expect.", source, pre.describe())
    return Preprocessing(pre.channel_order, 1.0, (0.0,) * len(pre.mean), (1.0,) * len(pre.std),
                         pre.resize, pre.resize_shorter, pre.interpolation)


def export_options(weights: str | Path | LoadedWeights, **given: object) -> VGG16Options:
    """The options to export ``weights`` with: a ``.keras`` archive's own, else VGG16's defaults
    (1000 classes, 224x224x3, no rescaling); keyword arguments not None override either
    (``classifier_activation="none"`` for no activation)."""
    chosen: dict[str, object] = {"include_rescaling": False, "include_top": True, "num_classes": 1000}
    if not isinstance(weights, LoadedWeights) and Path(str(weights)).is_file() and is_keras_archive(weights):
        chosen = dict(archive_config(weights).options)
    chosen.update({k: v for k, v in given.items() if v is not None})
    if chosen.get("classifier_activation") == "none":
        chosen["classifier_activation"] = None
    if not chosen.get("include_top"):
        chosen["num_classes"] = None
    return VGG16Options(**chosen)


def export_vgg16(weights: str | Path | LoadedWeights, out: str | Path, options: VGG16Options | None = None,
                 *, channel_order: str | None = None, preprocessing: Preprocessing | None = None) -> Exported:
    """Build VGG16 from weights (a file, ``random[:SEED]`` or loaded weights) and write ONNX + spec.

    ``options`` default to :func:`export_options` (a ``.keras`` archive's own).
    ``preprocessing`` states what the weights expect; it is required for files
    that cannot say (Keras 3 ``.weights.h5``, ``.keras`` without rescaling) and
    replaces what a published file's format implies. ``channel_order``
    ("RGB"/"BGR") is the order the exported model takes: conv1_1 is rewired only
    when it differs from the order the weights expect.
    """
    if options is None:
        options = export_options(weights)
    options = options or VGG16Options(include_rescaling=False, include_top=True, num_classes=1000)
    check_target(out, "ONNX model")  # before minutes of work, not after
    log.info("exporting %s to %s", options.name, out)
    loaded = weights if isinstance(weights, LoadedWeights) else load_weights(weights, options)
    loaded = loaded.stated(preprocessing)
    if loaded.preprocessing is None:
        raise WeightsError(f"{loaded.path or loaded.source}: a {loaded.source} file does not say what input its "
                           "weights expect; state it: --preprocessing unit|keras-rescaling|tf|caffe-bgr|caffe-rgb|"
                           "torchvision|FILE.json, or --scale/--mean/--std/--channel-order "
                           "(Python: export_vgg16(..., preprocessing=...))")
    if channel_order:
        loaded = loaded.with_channel_order(channel_order)
    model = build_onnx(loaded.arrays, options, source=loaded.path or loaded.source)
    spec = spec_for(loaded, options)
    out = check_target(out, "ONNX model")
    with atomic_target(out) as tmp:
        onnx.save(model, tmp)
    spec.save(spec_path_for(out))
    log.info("exported %s (%s weights) to %s", options.name, loaded.source, out)
    return Exported(out, spec)
