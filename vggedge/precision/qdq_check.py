"""Check a Q/DQ ONNX model against what TensorRT's explicit quantization accepts.

Used by the build before handing a model to TensorRT, and by the tests. Each
violation names the node or tensor and says what TensorRT expects.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
from onnx import numpy_helper

QDQ = ("QuantizeLinear", "DequantizeLinear")
CHANNEL_AXIS = {"Conv": 0, "ConvTranspose": 1}


def tensorrt_violations(model: onnx.ModelProto) -> list[str]:
    """Every way the model breaks TensorRT's Q/DQ rules (empty list when it is acceptable)."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    consumers = Counter(name for node in graph.node for name in node.input)
    users = {name: [n for n in graph.node if name in n.input] for n in graph.node for name in n.output}
    producers = {name: n for n in graph.node for name in n.output}
    problems: list[str] = []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 13:
        problems.append(f"opset {opset}: per-channel Q/DQ needs opset 13 or later")
    qdq_nodes = [n for n in graph.node if n.op_type in QDQ]
    if not qdq_nodes:
        problems.append("no QuantizeLinear/DequantizeLinear nodes: the model is not explicitly quantized")
    for node in qdq_nodes:
        problems += _zero_point_problems(node, inits)
        if node.op_type == "QuantizeLinear" and consumers[node.output[0]] != 1:
            problems.append(f"{node.name}: QuantizeLinear output feeds {consumers[node.output[0]]} nodes; "
                            "TensorRT expects a dedicated Q/DQ pair per consumer")
        source = _constant_source(node, inits, producers) if node.op_type == "DequantizeLinear" else None
        if source is not None:
            problems += _weight_problems(node, source, inits, users.get(node.output[0], []))
    return problems


def _constant_source(node: onnx.NodeProto, inits: dict, producers: dict) -> onnx.TensorProto | None:
    """The initializer a DequantizeLinear reads: directly, or through a weight's QuantizeLinear (AddQDQPairToWeight)."""
    if node.input[0] in inits:
        return inits[node.input[0]]
    quant = producers.get(node.input[0])
    if quant is not None and quant.op_type == "QuantizeLinear" and quant.input[0] in inits:
        return inits[quant.input[0]]
    return None


def _zero_point_problems(node: onnx.NodeProto, inits: dict) -> list[str]:
    if len(node.input) < 3 or not node.input[2]:
        return [f"{node.name}: no zero point given (defaults to uint8); TensorRT expects an int8 zero point of 0"]
    zp = inits.get(node.input[2])
    if zp is None:
        return [f"{node.name}: zero point {node.input[2]!r} is not a constant"]
    values = numpy_helper.to_array(zp)
    out = []
    if values.dtype != np.int8:
        out.append(f"{node.name}: zero point type {values.dtype}, TensorRT expects int8")
    if np.any(values != 0):
        out.append(f"{node.name}: zero point {values.ravel()[:4]} is not 0; TensorRT requires symmetric "
                   "quantization (ActivationSymmetric=True, WeightSymmetric=True)")
    return out


def _weight_problems(node: onnx.NodeProto, data: onnx.TensorProto, inits: dict, users: list) -> list[str]:
    if data.data_type == onnx.TensorProto.INT32:
        return [f"{node.name}: dequantizes an int32 tensor {data.name!r} (a quantized bias); TensorRT's parser "
                "rejects it: quantize with QuantizeBias=False"]
    scale = numpy_helper.to_array(inits[node.input[1]]) if node.input[1] in inits else None
    weight_users = [u for u in users if u.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul") and u.input[1] == node.output[0]]
    if scale is None or not weight_users:
        return []
    user = weight_users[0]
    axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
    expected = CHANNEL_AXIS.get(user.op_type)
    if user.op_type == "Gemm":
        trans_b = next((a.i for a in user.attribute if a.name == "transB"), 0)
        expected = 0 if trans_b else 1
    elif user.op_type == "MatMul":
        expected = 1
    if scale.ndim == 1 and scale.size > 1:
        channels = data.dims[expected]
        if axis != expected or scale.size != channels:
            return [f"{node.name}: per-channel scales ({scale.size}) on axis {axis}; TensorRT expects the "
                    f"output-channel axis {expected} of {user.op_type} {user.name!r} ({channels} channels)"]
    return []
