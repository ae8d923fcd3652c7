"""ModelSpec: the deployment facts that travel with every ONNX file and engine.

A spec is saved as JSON beside each artefact (``model.onnx`` -> ``model.spec.json``)
so any later step, on any machine, knows the input size, layout, channel order,
normalisation, resize policy, labels and tensor names without guessing.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .atomic import write_text_atomic
from .errors import ModelError

SPEC_VERSION = 1
RESIZE_POLICIES = ("direct", "shorter_crop")
CHANNEL_ORDERS = ("RGB", "BGR")
INTERPOLATIONS = ("linear", "area", "cubic", "nearest")


@dataclass(frozen=True)
class Preprocessing:
    """How raw pixels become the tensor the model expects.

    ``x = (pixel * scale - mean) / std`` per channel, pixels 0..255, channels in
    ``channel_order`` (mean/std listed in that same order), after resizing by
    ``resize``: ``direct`` resizes straight to the input size; ``shorter_crop``
    resizes the shorter side to ``resize_shorter`` then centre-crops the input size.
    Names and sizes are checked here; value ranges where a ModelSpec is built.
    """

    channel_order: str = "RGB"
    scale: float = 1.0
    mean: tuple[float, ...] = (123.68, 116.779, 103.939)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    resize: str = "direct"
    resize_shorter: int = 256
    interpolation: str = "linear"

    def __post_init__(self) -> None:
        if self.channel_order not in CHANNEL_ORDERS:
            raise ModelError(f"channel_order must be one of {CHANNEL_ORDERS}, got {self.channel_order!r}")
        if self.resize not in RESIZE_POLICIES:
            raise ModelError(f"resize must be one of {RESIZE_POLICIES}, got {self.resize!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise ModelError(f"interpolation must be linear, area, cubic or nearest, got {self.interpolation!r}")
        if isinstance(self.resize_shorter, bool) or not isinstance(self.resize_shorter, int) \
                or self.resize_shorter < 1:
            raise ModelError(f"resize_shorter must be a positive whole number of pixels such as 256, "
                             f"got {self.resize_shorter!r}")
        if len(self.mean) != len(self.std):
            raise ModelError(f"mean has {len(self.mean)} values but std has {len(self.std)}")
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

    def with_channel_order(self, order: str) -> "Preprocessing":
        """The same normalisation for inputs in ``order``: mean and std are listed in the new order."""
        if order == self.channel_order:
            return self
        return dataclasses.replace(self, channel_order=order, mean=tuple(reversed(self.mean)),
                                   std=tuple(reversed(self.std)))

    def describe(self) -> str:
        """One line for logs: ``RGB x1 - [123.68, ...] / [1, ...], direct`` (resize size and
        interpolation added when not 256 and linear)."""
        mean = ", ".join(f"{v:g}" for v in self.mean)
        std = ", ".join(f"{v:g}" for v in self.std)
        resize = self.resize if self.resize == "direct" or self.resize_shorter == 256 \
            else f"{self.resize} {self.resize_shorter}"
        interpolation = "" if self.interpolation == "linear" else f", {self.interpolation}"
        return f"{self.channel_order} x{self.scale:g} - [{mean}] / [{std}], {resize}{interpolation}"


# What each published weight family expects (see shared notes, weights.md).
CAFFE_RGB = Preprocessing("RGB", 1.0, (123.68, 116.779, 103.939), (1.0, 1.0, 1.0))
CAFFE_BGR = Preprocessing("BGR", 1.0, (103.939, 116.779, 123.68), (1.0, 1.0, 1.0))
TORCHVISION = Preprocessing(
    "RGB", 1.0 / 255.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), resize="shorter_crop"
)
RAW_PIXELS = Preprocessing("RGB", 1.0, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
#: pixels / 255 (Keras ``Rescaling(1/255)``, Keras-CV ``include_rescaling=True``)
UNIT = Preprocessing("RGB", 1.0 / 255.0, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
#: pixels / 127.5 - 1 (Keras applications' "tf" mode: MobileNet, Inception, ...)
TF_SYMMETRIC = Preprocessing("RGB", 1.0 / 127.5, (1.0, 1.0, 1.0), (1.0, 1.0, 1.0))
#: the named presets ``--preprocessing NAME`` accepts
PRESETS: dict[str, Preprocessing] = {
    "caffe-rgb": CAFFE_RGB, "caffe-bgr": CAFFE_BGR, "torchvision": TORCHVISION, "raw": RAW_PIXELS,
    "unit": UNIT, "keras-rescaling": UNIT, "tf": TF_SYMMETRIC,
}


@dataclass(frozen=True)
class ModelSpec:
    """Everything a later step needs to feed and read a VGG16-family model."""

    name: str = "vgg16"
    input_name: str = "images"
    output_name: str = "predictions"
    height: int = 224
    width: int = 224
    channels: int = 3
    layout: str = "NCHW"
    dtype: str = "float32"
    output_dtype: str = "float32"
    output_kind: str = "probabilities"  # probabilities | logits | features
    num_classes: int | None = 1000
    labels: str | None = "imagenet"
    preprocessing: Preprocessing = field(default_factory=lambda: CAFFE_RGB)
    weights_source: str = "random"
    weights_sha256: str | None = None
    precision: str = "fp32"
    #: the batch a fixed-batch model takes (None: dynamic batch); short batches are padded to it
    fixed_batch: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.layout not in ("NCHW", "NHWC"):
            raise ModelError(f"spec layout must be NCHW or NHWC, got {self.layout!r}")
        for key in ("dtype", "output_dtype"):
            if getattr(self, key) not in ("float32", "float16"):
                raise ModelError(f"spec {key} must be float32 or float16, got {getattr(self, key)!r}")
        check_values(self)

    @property
    def input_shape(self) -> tuple[int, int, int, int] | tuple[int, ...]:
        """Input shape with a dynamic batch written as -1."""
        if self.layout == "NCHW":
            return (-1, self.channels, self.height, self.width)
        return (-1, self.height, self.width, self.channels)

    def replace(self, **changes: Any) -> "ModelSpec":
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, with a format version."""
        data = dataclasses.asdict(self)
        data["spec_version"] = SPEC_VERSION
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> "ModelSpec":
        """Inverse of :meth:`to_dict`; unknown keys are an error, not silently dropped."""
        if not isinstance(data, dict):
            raise ModelError(f"{source}: a spec must be a JSON object, got {type(data).__name__}")
        data = checked_fields(cls, data, source, "spec", ("spec_version", SPEC_VERSION))
        extra = dict(data.get("extra") or {}) if isinstance(data.get("extra"), dict) else data.get("extra")
        if isinstance(extra, dict) and "fixed_batch" in extra and data.get("fixed_batch") is None:
            data["fixed_batch"] = extra.pop("fixed_batch")  # written by vggedge 0.1's import-onnx
            data["extra"] = extra
        if isinstance(data.get("preprocessing"), dict):
            data["preprocessing"] = checked_fields(Preprocessing, data["preprocessing"], source, "preprocessing")
        check_types(data, source)
        try:
            data["preprocessing"] = Preprocessing(**data["preprocessing"])
            return cls(**data)
        except ModelError as exc:
            raise ModelError(f"{source}: {exc}") from None

    def save(self, path: str | Path) -> Path:
        """Write the spec as JSON to ``path`` and return it."""
        return write_text_atomic(path, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "ModelSpec":
        """Read a spec JSON file."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ModelError(f"{path}: spec file not found; every artefact needs its .spec.json beside it") from None
        except json.JSONDecodeError as exc:
            raise ModelError(f"{path}: spec is not valid JSON ({exc})") from None
        return cls.from_dict(data, source=str(path))


from .spec_check import check_types, check_values  # noqa: E402  (the checks need the classes above)


def checked_fields(cls: type, data: dict[str, Any], source: str, what: str,
                   version: tuple[str, int] | None = None) -> dict[str, Any]:
    """A copy of ``data`` without its version key, refusing another version or fields ``cls`` lacks."""
    data = dict(data)
    if version is not None:
        key, expected = version
        found = data.pop(key, expected)
        if found != expected:
            raise ModelError(f"{source}: {key} {found} is not supported (expected {expected})")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ModelError(f"{source}: unknown {what} fields {unknown}; expected only {sorted(known)}")
    return data


def spec_path_for(artefact: str | Path) -> Path:
    """The sidecar of an artefact: ``dir/model.fp16.onnx`` -> ``dir/model.fp16.spec.json``."""
    artefact = Path(artefact)
    return artefact.with_name(artefact.stem + ".spec.json")


def missing_spec(artefact: str | Path) -> ModelError:
    """The error for an artefact without its spec sidecar: where it was looked for, and what writes one."""
    return ModelError(f"{artefact}: no spec sidecar at {spec_path_for(artefact)}. Export with `vggedge export` "
                      "(which writes it) or import a foreign ONNX with `vggedge import-onnx`.")


def load_spec_for(artefact: str | Path) -> ModelSpec:
    """Load the spec sidecar that belongs to an artefact, with a clear error if absent."""
    path = spec_path_for(artefact)
    if not path.exists():
        raise missing_spec(artefact)
    spec = ModelSpec.load(path)
    if Path(artefact).suffix == ".onnx" and Path(artefact).is_file():
        from .spec_check import check_against_model

        check_against_model(spec, path, Path(artefact))
    return spec
