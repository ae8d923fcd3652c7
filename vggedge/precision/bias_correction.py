"""Empirical bias correction of a Q/DQ model (Nagel et al. 2019, "Data-Free Quantization", section 4.2).

Quantizing weights and activations shifts each layer's output mean a little; the
shifts add up through the network. For each quantized Conv/Gemm, in graph order,
this measures the per-output-channel mean of its (pre-activation) output over the
calibration feeds, in the Q/DQ model and in the FP32 model, and subtracts the
difference from the layer's float bias. It is sequential, like AIMET's empirical
bias correction: every layer is measured in the Q/DQ model whose earlier layers are
already corrected, so each correction also absorbs the mean shift its inputs still
carry, and no shift is corrected twice.

Only the float bias initializers change: Q/DQ nodes, scales and int8 weights stay
as they are, so a TensorRT-valid model stays valid. A bias shared by several layers
is split into one initializer per corrected layer; a quantized layer without a bias
is left alone. Only onnx and onnxruntime are used: the Q/DQ model is run with its
biases fed as inputs (one session for all the layers) and the layers' outputs added
as graph outputs.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import ModelError

log = logging.getLogger(__name__)
CORRECTED_OPS = ("Conv", "Gemm")
Feed = dict[str, np.ndarray]


@dataclass(frozen=True)
class LayerCorrection:
    """One corrected layer: its node, output tensor, bias initializer and the mean shift removed."""

    layer: str
    output: str
    bias: str
    #: mean over channels of |mean Q/DQ output - mean FP32 output| before the correction
    mean_abs_error: float
    #: the largest per-channel shift subtracted from the bias
    max_shift: float


def quantized_layers(model: onnx.ModelProto, ops: Sequence[str] = CORRECTED_OPS) -> list[onnx.NodeProto]:
    """Nodes of ``ops`` (Conv/Gemm) whose weight comes from a DequantizeLinear and that have a constant float
    bias, in graph order."""
    inits = {t.name: t for t in model.graph.initializer}
    producers = {name: node for node in model.graph.node for name in node.output}
    layers = []
    for node in model.graph.node:
        if node.op_type not in ops or len(node.input) < 3 or not node.input[2]:
            continue
        weight = producers.get(node.input[1])
        bias = inits.get(node.input[2])
        if weight is None or weight.op_type != "DequantizeLinear":
            continue  # left un-quantized (mixed precision): no quantization error of its own
        if bias is None or bias.data_type != onnx.TensorProto.FLOAT:
            continue
        layers.append(node)
    return layers


def feeds_from(reader) -> list[Feed]:
    """Every batch of an onnxruntime ``CalibrationDataReader`` (rewound first when it can be)."""
    if hasattr(reader, "rewind"):
        reader.rewind()
    feeds = list(iter(reader.get_next, None))
    if not feeds:
        raise ModelError("bias correction needs calibration data; the reader gave no batches")
    return feeds


def channel_means(model: onnx.ModelProto, outputs: Sequence[str], feeds: Iterable[Feed], *,
                  threads: int = 0) -> dict[str, np.ndarray]:
    """Per-channel means (axis 1; over batch and spatial positions) of ``outputs`` of ``model`` over ``feeds``."""
    session = _session(_with_outputs(model, outputs), threads)
    inputs = {i.name for i in session.get_inputs()}
    sums: dict[str, np.ndarray] = {}
    counts = dict.fromkeys(outputs, 0)
    for feed in feeds:
        values = session.run(list(outputs), {k: v for k, v in feed.items() if k in inputs})
        for name, value in zip(outputs, values):
            total, count = _channel_sum(value)
            sums[name] = sums.get(name, 0.0) + total
            counts[name] += count
    return {name: sums[name] / counts[name] for name in outputs}


def mean_errors(qdq: onnx.ModelProto, fp32: onnx.ModelProto | str | Path, feeds: Sequence[Feed], *,
                threads: int = 0) -> dict[str, np.ndarray]:
    """Per-channel mean output error (Q/DQ minus FP32) of every quantized layer on ``feeds``, by layer name."""
    layers = quantized_layers(qdq)
    outputs = [node.output[0] for node in layers]
    reference = channel_means(_load(fp32), outputs, feeds, threads=threads)
    measured = channel_means(qdq, outputs, feeds, threads=threads)
    return {node.name: measured[node.output[0]] - reference[node.output[0]] for node in layers}


def correct_biases(qdq: onnx.ModelProto, fp32: onnx.ModelProto | str | Path, feeds: Sequence[Feed], *,
                   threads: int = 0, ops: Sequence[str] = CORRECTED_OPS) -> list[LayerCorrection]:
    """Correct ``qdq``'s float biases in place, layer by layer in graph order; returns what was done.

    ``fp32`` is the model ``qdq`` was quantized from (same layer output names);
    ``feeds`` are the calibration batches (``{input name: array}``); ``ops`` limits the
    corrected layer types (e.g. ``("Conv",)``).
    """
    layers = quantized_layers(qdq, ops)
    if not layers:
        log.warning("bias correction: no quantized Conv/Gemm layer with a float bias; nothing to correct")
        return []
    outputs = [node.output[0] for node in layers]
    fp32 = _load(fp32)
    reference = channel_means(fp32, _present(fp32, outputs), feeds, threads=threads)
    missing = [o for o in outputs if o not in reference]
    if missing:
        raise ModelError(f"bias correction: the FP32 model has no tensor(s) {missing[:4]}; it must be the model "
                         "the Q/DQ model was quantized from")
    biases = _own_biases(qdq, layers)
    probe = _biases_as_inputs(qdq, biases, [])
    values = {name: numpy_helper.to_array(_initializer(qdq, name)).astype(np.float32) for name in biases.values()}
    done = []
    for node in layers:
        output, bias = node.output[0], biases[node.name]
        measured = _mean_with(_session(_up_to(probe, output), threads), output, feeds, values)
        error = measured - reference[output]
        values[bias] = (values[bias] - error).astype(np.float32)
        done.append(LayerCorrection(node.name, output, bias, float(np.abs(error).mean()), float(np.abs(error).max())))
        log.debug("bias correction %s: mean |error| %.4g, largest shift %.4g", node.name, done[-1].mean_abs_error,
                  done[-1].max_shift)
    for name, value in values.items():
        _initializer(qdq, name).CopyFrom(numpy_helper.from_array(value, name))
    log.info("bias correction: %d layers corrected on %d calibration batch(es)", len(done), len(feeds))
    return done


def _mean_with(session, output: str, feeds: Sequence[Feed], biases: dict[str, np.ndarray]) -> np.ndarray:
    inputs = {i.name for i in session.get_inputs()}
    total, count = 0.0, 0
    for feed in feeds:
        value = session.run([output], {k: v for k, v in {**feed, **biases}.items() if k in inputs})[0]
        part, n = _channel_sum(value)
        total, count = total + part, count + n
    return total / count


def _channel_sum(value: np.ndarray) -> tuple[np.ndarray, int]:
    """Sum over every axis but the channel axis (1), and how many values each channel summed."""
    if value.ndim < 2:
        raise ModelError(f"bias correction: a layer output of shape {value.shape} has no channel axis")
    axes = tuple(a for a in range(value.ndim) if a != 1)
    return value.astype(np.float64).sum(axis=axes), value.size // value.shape[1]


def _own_biases(model: onnx.ModelProto, layers: Sequence[onnx.NodeProto]) -> dict[str, str]:
    """Layer name -> a bias initializer used by that layer alone (a shared one is copied under a new name)."""
    uses: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    taken = {t.name for t in model.graph.initializer}
    own = {}
    for node in layers:
        name = node.input[2]
        if uses[name] > 1:
            fresh = _fresh(f"{node.name}.bias_corrected", taken)
            tensor = copy.deepcopy(_initializer(model, name))
            tensor.name = fresh
            model.graph.initializer.append(tensor)
            node.input[2] = fresh
            uses[name] -= 1
            taken.add(fresh)
            name = fresh
        own[node.name] = name
    return own


def _fresh(name: str, taken: set[str]) -> str:
    candidate, i = name, 1
    while candidate in taken:
        candidate, i = f"{name}_{i}", i + 1
    return candidate


def _biases_as_inputs(model: onnx.ModelProto, biases: dict[str, str], outputs: Sequence[str]) -> onnx.ModelProto:
    """A copy whose given bias initializers are graph inputs (fed per run) and with ``outputs`` as graph outputs."""
    probe = _with_outputs(model, outputs)
    names = set(biases.values())
    kept = [t for t in probe.graph.initializer if t.name not in names]
    moved = [t for t in probe.graph.initializer if t.name in names]
    del probe.graph.initializer[:]
    probe.graph.initializer.extend(kept)
    for tensor in moved:
        probe.graph.input.append(onnx.helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims)))
    return probe


def _up_to(model: onnx.ModelProto, output: str) -> onnx.ModelProto:
    """The part of ``model`` that computes ``output`` (its only graph output): a layer's mean needs no later layer."""
    producers = {name: node for node in model.graph.node for name in node.output}
    needed, stack, kept = set(), [output], set()
    while stack:
        name = stack.pop()
        if name in needed:
            continue
        needed.add(name)
        node = producers.get(name)
        if node is not None and id(node) not in kept:
            kept.add(id(node))
            stack.extend(i for i in node.input if i)
    graph = onnx.helper.make_graph(
        [n for n in model.graph.node if id(n) in kept], model.graph.name,
        [i for i in model.graph.input if i.name in needed],
        [onnx.helper.make_tensor_value_info(output, onnx.TensorProto.FLOAT, None)],
        [t for t in model.graph.initializer if t.name in needed])
    return onnx.helper.make_model(graph, opset_imports=model.opset_import, ir_version=model.ir_version)


def _with_outputs(model: onnx.ModelProto, outputs: Sequence[str]) -> onnx.ModelProto:
    probe = copy.deepcopy(model)
    present = {o.name for o in probe.graph.output}
    for name in outputs:
        if name not in present:
            probe.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return probe


def _present(model: onnx.ModelProto, names: Sequence[str]) -> list[str]:
    produced = {name for node in model.graph.node for name in node.output}
    return [n for n in names if n in produced]


def _initializer(model: onnx.ModelProto, name: str) -> onnx.TensorProto:
    return next(t for t in model.graph.initializer if t.name == name)


def _load(model: onnx.ModelProto | str | Path) -> onnx.ModelProto:
    return model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))


def _session(model: onnx.ModelProto, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    # the Q/DQ graph exactly as written: onnxruntime's rewrites (int8 fusions, constant folding) differ in rounding
    # between a model with constant biases and the same model with biases fed as inputs
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def correct_file(path: str | Path, fp32: str | Path, reader, *, threads: int = 0) -> list[LayerCorrection]:
    """Correct the biases of the Q/DQ model at ``path`` (rewritten in place) on a calibration reader's batches."""
    qdq = onnx.load(str(path))
    done = correct_biases(qdq, fp32, feeds_from(reader), threads=threads)
    onnx.save(qdq, str(path))
    return done
