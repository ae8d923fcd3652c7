"""VGG16 as a data table, turned into an ONNX graph straight from numpy arrays.

The options follow Keras-CV's ``VGG16Backbone``: ``include_rescaling``,
``include_top``, ``num_classes``, ``input_shape`` (H, W, C), ``pooling``
(None / "avg" / "max"), ``classifier_activation`` and ``name``. The graph is
NCHW with a dynamic batch axis; layer names follow Keras (``block1_conv1`` ...
``fc1``, ``fc2``, ``predictions``). A 4-D feature output (no top, no pooling) is
transposed to NHWC so its shape is the one Keras-CV documents.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterator, Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import ConfigError, WeightsError

log = logging.getLogger(__name__)

OPSET = 17
#: Output channels per conv layer, "M" for a 2x2/2 max-pool (as in timm's cfgs["vgg16"]).
VGG16_CFG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                                    512, 512, 512, "M", 512, 512, 512, "M")
FC_UNITS = 4096
MIN_SIZE = 32
POOLINGS = (None, "avg", "max")
ACTIVATIONS = (None, "softmax")


@dataclass(frozen=True)
class VGG16Options:
    """Keras-CV ``VGG16Backbone`` options, validated the way Keras-CV validates them."""

    include_rescaling: bool
    include_top: bool
    num_classes: int | None = None
    input_shape: tuple[int, int, int] = (224, 224, 3)
    pooling: str | None = None
    classifier_activation: str | None = "softmax"
    name: str = "VGG16"

    def __post_init__(self) -> None:
        if self.include_top and not self.num_classes:
            raise ConfigError("If `include_top` is True, you should specify `num_classes`. "
                              f"Received: num_classes={self.num_classes}")
        if self.include_top and self.pooling:
            raise ConfigError("`pooling` must be `None` when `include_top=True`. "
                              f"Received pooling={self.pooling!r} and include_top={self.include_top}")
        if self.pooling not in POOLINGS:
            raise ConfigError(f"pooling must be one of None, 'avg', 'max'; received {self.pooling!r}")
        if self.classifier_activation not in ACTIVATIONS:
            raise ConfigError("classifier_activation must be 'softmax' or None; "
                              f"received {self.classifier_activation!r}")
        if self.num_classes is not None and int(self.num_classes) < 1:
            raise ConfigError(f"num_classes must be a positive integer; received {self.num_classes}")
        shape = tuple(int(v) for v in self.input_shape)
        if len(shape) != 3:
            raise ConfigError(f"input_shape must be (height, width, channels); received {self.input_shape!r}")
        h, w, c = shape
        if h < MIN_SIZE or w < MIN_SIZE or c < 1:
            raise ConfigError(f"input_shape {shape}: height and width must be at least {MIN_SIZE} "
                              "and channels at least 1")
        object.__setattr__(self, "input_shape", shape)

    @property
    def feature_hw(self) -> tuple[int, int]:
        """Spatial size after block5_pool (floor division by 2, five times)."""
        h, w, _ = self.input_shape
        for _ in range(5):
            h, w = h // 2, w // 2
        return h, w

    @property
    def output_name(self) -> str:
        """Keras name of the last layer, used as the ONNX output name."""
        if self.include_top:
            return "predictions"
        return {None: "block5_pool", "avg": "avg_pool", "max": "max_pool"}[self.pooling]

    def output_shape(self) -> tuple[int | None, ...]:
        """The output shape Keras-CV documents, batch as None."""
        if self.include_top:
            return (None, int(self.num_classes))
        if self.pooling:
            return (None, 512)
        fh, fw = self.feature_hw
        return (None, fh, fw, 512)


def conv_layers() -> Iterator[tuple[str, int]]:
    """Yield ``(keras_name, out_channels)`` for the 13 conv layers in order."""
    block, index = 1, 1
    for item in VGG16_CFG:
        if item == "M":
            block, index = block + 1, 1
            continue
        yield f"block{block}_conv{index}", int(item)
        index += 1


def expected_shapes(options: VGG16Options) -> dict[str, tuple[int, ...]]:
    """Canonical weight shapes: conv kernels OIHW, dense kernels (out, in), fc1 inputs in (c, h, w) order."""
    shapes: dict[str, tuple[int, ...]] = {}
    cin = options.input_shape[2]
    for name, cout in conv_layers():
        shapes[f"{name}/kernel"] = (cout, cin, 3, 3)
        shapes[f"{name}/bias"] = (cout,)
        cin = cout
    if options.include_top:
        fh, fw = options.feature_hw
        dims = [("fc1", 512 * fh * fw, FC_UNITS), ("fc2", FC_UNITS, FC_UNITS),
                ("predictions", FC_UNITS, int(options.num_classes))]
        for name, fin, fout in dims:
            shapes[f"{name}/kernel"] = (fout, fin)
            shapes[f"{name}/bias"] = (fout,)
    return shapes


def check_weights(weights: Mapping[str, np.ndarray], options: VGG16Options, source: str) -> None:
    """Raise WeightsError naming the layer and both shapes for any missing key or wrong shape."""
    for key, shape in expected_shapes(options).items():
        if key not in weights:
            raise WeightsError(f"{source}: missing weights for layer {key.split('/')[0]!r} ({key}); "
                               f"expected an array of shape {shape}")
        got = tuple(np.shape(weights[key]))
        if got != shape:
            raise WeightsError(f"{source}: layer {key.split('/')[0]!r} {key.split('/')[1]} has shape {got}, "
                               f"expected {shape} for input_shape={options.input_shape}, "
                               f"num_classes={options.num_classes}")


class _GraphWriter:
    """Accumulates nodes and float32 initializers; names follow the Keras layers."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def const(self, name: str, array: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name))
        return name

    def node(self, op: str, inputs: list[str], output: str, name: str, **attrs: object) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=name, **attrs))
        return output


def build_onnx(weights: Mapping[str, np.ndarray], options: VGG16Options,
               source: str = "weights") -> onnx.ModelProto:
    """Emit the VGG16 ONNX model (opset 17, dynamic batch) from canonical weights."""
    check_weights(weights, options, source)
    g = _GraphWriter()
    x = "images"
    if options.include_rescaling:
        x = g.node("Mul", [x, g.const("rescaling/scale", np.array(1.0 / 255.0))], "rescaling", "rescaling")
    block, index = 1, 1
    for item in VGG16_CFG:
        if item == "M":
            # block5's tensor gets a suffix: the graph output takes the Keras name.
            out = f"block{block}_pool" + ("/nchw" if block == 5 else "")
            x = g.node("MaxPool", [x], out, f"block{block}_pool", kernel_shape=[2, 2], strides=[2, 2])
            block, index = block + 1, 1
            continue
        name = f"block{block}_conv{index}"
        conv = g.node("Conv", [x, g.const(f"{name}.kernel", weights[f"{name}/kernel"]),
                               g.const(f"{name}.bias", weights[f"{name}/bias"])],
                      f"{name}/conv", name, kernel_shape=[3, 3], pads=[1, 1, 1, 1])
        x = g.node("Relu", [conv], name, f"{name}/relu")
        index += 1
    x = _head(g, x, weights, options)
    return _finish(g, x, options)


def _head(g: _GraphWriter, x: str, weights: Mapping[str, np.ndarray], options: VGG16Options) -> str:
    if options.include_top:
        x = g.node("Flatten", [x], "flatten", "flatten", axis=1)
        for name, act in (("fc1", "Relu"), ("fc2", "Relu"), ("predictions", None)):
            dense = g.node("Gemm", [x, g.const(f"{name}.kernel", weights[f"{name}/kernel"]),
                                    g.const(f"{name}.bias", weights[f"{name}/bias"])],
                           f"{name}/dense" if act or options.classifier_activation else name,
                           name, transB=1)
            if act:
                x = g.node(act, [dense], name, f"{name}/relu")
            else:
                x = dense
        if options.classifier_activation == "softmax":
            x = g.node("Softmax", [x], "predictions", "predictions/softmax", axis=-1)
        return x
    if options.pooling:
        op = "GlobalAveragePool" if options.pooling == "avg" else "GlobalMaxPool"
        pooled = g.node(op, [x], f"{options.pooling}_pool/4d", f"{options.pooling}_pool")
        return g.node("Flatten", [pooled], options.output_name, f"{options.pooling}_pool/flatten", axis=1)
    return g.node("Transpose", [x], "block5_pool", "block5_pool/to_nhwc", perm=[0, 2, 3, 1])


def _finish(g: _GraphWriter, x: str, options: VGG16Options) -> onnx.ModelProto:
    h, w, c = options.input_shape
    out_name = options.output_name
    if x != out_name:
        x = g.node("Identity", [x], out_name, f"{out_name}/output")
    out_shape = ["batch", *options.output_shape()[1:]]
    graph = helper.make_graph(
        g.nodes, options.name,
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", c, h, w])],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, out_shape)],
        initializer=g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="vggedge", doc_string=f"VGG16 {options}")
    model.ir_version = 8
    check_structure(model)
    return model


def check_structure(model: onnx.ModelProto) -> None:
    """Run the ONNX checker on the graph without its weights (serialising 0.5 GB costs seconds).

    Initializers become typed graph inputs, so node, attribute and opset rules are
    all checked; the weights themselves were shape-checked by :func:`check_weights`.
    """
    graph = model.graph
    weight_inputs = [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in graph.initializer]
    skeleton = helper.make_graph(list(graph.node), graph.name, [*graph.input, *weight_inputs], list(graph.output))
    skeleton_model = helper.make_model(skeleton, opset_imports=list(model.opset_import))
    skeleton_model.ir_version = model.ir_version
    onnx.checker.check_model(skeleton_model)


def random_weights(options: VGG16Options, seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic He-initialised weights (normal, std sqrt(2/fan_in)), small random biases."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for key, shape in expected_shapes(options).items():
        if key.endswith("/kernel"):
            fan_in = int(np.prod(shape[1:]))
            out[key] = (rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in)))
        else:
            out[key] = rng.uniform(-0.05, 0.05, shape).astype(np.float32)
    return out
