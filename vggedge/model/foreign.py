"""Bring a user's own VGG16-family ONNX file into the flow by writing its ModelSpec.

The input layout (NCHW or NHWC), a fixed or dynamic batch, the class count and
whether the output is already a softmax are read from the graph; what the graph
cannot say (the preprocessing its weights expect) comes from the user: a named
preset, a :class:`~vggedge.spec.Preprocessing` (see ``vggedge.preprocessing_args``
for the command-line and JSON forms).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import onnx

from ..errors import ConfigError, ModelError
from ..spec import PRESETS, ModelSpec, Preprocessing, spec_path_for

ONNX_DTYPES = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16"}


def _dims(value: onnx.ValueInfoProto) -> list[int | None]:
    return [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]


def preprocessing_for(preset: str | Preprocessing) -> Preprocessing:
    """A Preprocessing as given, or the preset of that name."""
    if isinstance(preset, Preprocessing):
        return preset
    if preset not in PRESETS:
        raise ConfigError(f"preprocessing preset {preset!r} is unknown; choose one of {', '.join(PRESETS)}")
    return PRESETS[preset]


def spec_from_onnx(model: onnx.ModelProto, preset: str | Preprocessing, source: str = "<model>") -> ModelSpec:
    """Infer a spec from a classifier graph with one image input of 1 or 3 channels.

    ``preset``: the preprocessing the weights expect, a preset name or a Preprocessing.
    """
    preprocessing = preprocessing_for(preset)
    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1 or len(model.graph.output) < 1:
        raise ModelError(f"{source}: expected one image input and a class-score output; "
                         f"found inputs {[i.name for i in inputs]}")
    image, output = inputs[0], model.graph.output[0]
    dims = _dims(image)
    if len(dims) != 4:
        raise ModelError(f"{source}: input {image.name!r} has shape {dims}; expected 4-D NCHW or NHWC")
    if dims[1] == 3:
        layout, (c, h, w) = "NCHW", dims[1:]
    elif dims[3] == 3:
        layout, (h, w, c) = "NHWC", dims[1:]
    else:
        raise ModelError(f"{source}: input {image.name!r} shape {dims}: cannot tell NCHW from NHWC "
                         "(expected 3 channels at axis 1 or 3)")
    if h is None or w is None:
        raise ModelError(f"{source}: input {image.name!r} has dynamic height/width {dims}; expected fixed sizes")
    dtype = ONNX_DTYPES.get(image.type.tensor_type.elem_type)
    if dtype is None:
        raise ModelError(f"{source}: input {image.name!r} element type {image.type.tensor_type.elem_type}; "
                         "expected float32 or float16")
    classes = _dims(output)[-1]
    producer = next((n for n in model.graph.node if output.name in n.output), None)
    kind = "probabilities" if producer is not None and producer.op_type == "Softmax" else "logits"
    quantized = any(n.op_type in ("QuantizeLinear", "QLinearConv", "ConvInteger") for n in model.graph.node)
    return ModelSpec(name=model.graph.name or "imported", input_name=image.name, output_name=output.name,
                     height=h, width=w, channels=c, layout=layout, dtype=dtype,
                     output_dtype=ONNX_DTYPES.get(output.type.tensor_type.elem_type, "float32"),
                     output_kind=kind, num_classes=classes, labels="imagenet" if classes == 1000 else None,
                     preprocessing=preprocessing, weights_source=f"onnx:{Path(source).name}",
                     fixed_batch=dims[0] or None, precision="int8" if quantized else "fp32",
                     # a Q/DQ file from elsewhere: its style is unknown, so where U8S8 saturates it runs unfused
                     extra={"calibration": {"style": "unknown"}} if quantized else {})


def import_onnx(path: str | Path, preset: str | Preprocessing,
                out: str | Path | None = None) -> tuple[Path, ModelSpec]:
    """Check a foreign ONNX, copy it to ``out`` (optional) and write its spec beside it."""
    path = Path(path)
    try:
        model = onnx.load(path)
        onnx.checker.check_model(model)
    except FileNotFoundError:
        raise ModelError(f"{path}: ONNX file not found") from None
    except Exception as exc:  # DecodeError, ValidationError
        raise ModelError(f"{path}: not a valid ONNX model ({exc})") from None
    spec = spec_from_onnx(model, preset, str(path))
    target = Path(out) if out else path
    if target != path:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    spec.save(spec_path_for(target))
    return target, spec
