"""Read an ONNX file's graph inputs without loading its weights.

VGG16's ONNX file is 553 MB, almost all initializers. Walking the protobuf wire
format and seeking past every field but ``graph.input`` reads a few hundred
bytes, so checking a sidecar against its model costs nothing even on a Jetson.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO, Iterator, Union

from .errors import ModelError

Dim = Union[int, str, None]
MODEL_GRAPH = 7  # ModelProto.graph
GRAPH_INPUT = 11  # GraphProto.input
GRAPH_OUTPUT = 12  # GraphProto.output


def _varint(f: BinaryIO, pos: int) -> tuple[int, int]:
    f.seek(pos)
    value, shift = 0, 0
    while True:
        byte = f.read(1)
        if not byte:
            raise EOFError
        value |= (byte[0] & 0x7F) << shift
        pos += 1
        if not byte[0] & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(f: BinaryIO, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(field number, payload start, payload length) of the length-delimited fields in [start, end)."""
    pos = start
    while pos < end:
        key, pos = _varint(f, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _varint(f, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            length, pos = _varint(f, pos)
            yield number, pos, length
            pos += length
        else:
            raise ValueError(f"unsupported wire type {wire}")
    if pos != end:
        raise ValueError("field overruns its message")


def _graph_values(path: Path, field: int) -> list[bytes]:
    """The serialized ValueInfoProto messages of one graph field (inputs or outputs), weights never read."""
    found: list[bytes] = []
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            for number, start, length in _fields(f, 0, size):
                if number != MODEL_GRAPH:
                    continue
                for sub, s2, l2 in _fields(f, start, start + length):
                    if sub == field:
                        f.seek(s2)
                        found.append(f.read(l2))
    except (OSError, EOFError, ValueError) as exc:
        raise ModelError(f"{path}: not a readable ONNX model ({exc})") from None
    return found


def _value_infos(path: Path, field: int) -> list:
    import onnx

    try:
        return [onnx.ValueInfoProto.FromString(data) for data in _graph_values(path, field)]
    except Exception as exc:  # protobuf's DecodeError
        raise ModelError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {exc})") from None


def graph_inputs(path: str | Path) -> dict[str, tuple[int, tuple[Dim, ...]]]:
    """``{input name: (ONNX element type, dims)}``; a dim is an int, a symbolic name, or None."""
    path = Path(path)
    inputs: dict[str, tuple[int, tuple[Dim, ...]]] = {}
    for info in _value_infos(path, GRAPH_INPUT):
        tensor = info.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim)
        inputs[info.name] = (tensor.elem_type, dims)
    if not inputs:
        raise ModelError(f"{path}: not an ONNX model with graph inputs")
    return inputs


def graph_outputs(path: str | Path) -> list[str]:
    """The names of a model's graph outputs (read like :func:`graph_inputs`, without loading the weights)."""
    return [info.name for info in _value_infos(Path(path), GRAPH_OUTPUT)]
