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


def graph_inputs(path: str | Path) -> dict[str, tuple[int, tuple[Dim, ...]]]:
    """``{input name: (ONNX element type, dims)}``; a dim is an int, a symbolic name, or None."""
    import onnx

    path = Path(path)
    inputs: dict[str, tuple[int, tuple[Dim, ...]]] = {}
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            for number, start, length in _fields(f, 0, size):
                if number != MODEL_GRAPH:
                    continue
                for sub, s2, l2 in _fields(f, start, start + length):
                    if sub == GRAPH_INPUT:
                        f.seek(s2)
                        info = onnx.ValueInfoProto.FromString(f.read(l2))
                        tensor = info.type.tensor_type
                        dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                                     for d in tensor.shape.dim)
                        inputs[info.name] = (tensor.elem_type, dims)
    except (OSError, EOFError, ValueError) as exc:
        raise ModelError(f"{path}: not a readable ONNX model ({exc})") from None
    except Exception as exc:  # protobuf's DecodeError
        raise ModelError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {exc})") from None
    if not inputs:
        raise ModelError(f"{path}: not an ONNX model with graph inputs")
    return inputs


def graph_outputs(path: str | Path) -> list[str]:
    """The names of a model's graph outputs (read like :func:`graph_inputs`, without loading the weights)."""
    path = Path(path)
    names: list[str] = []
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            for number, start, length in _fields(f, 0, size):
                if number != MODEL_GRAPH:
                    continue
                for sub, s2, l2 in _fields(f, start, start + length):
                    if sub == GRAPH_OUTPUT:
                        f.seek(s2)
                        for field, s3, l3 in _fields(f, s2, s2 + l2):
                            if field == 1:  # ValueInfoProto.name
                                f.seek(s3)
                                names.append(f.read(l3).decode("utf-8", "replace"))
                                break
    except (OSError, EOFError, ValueError) as exc:
        raise ModelError(f"{path}: not a readable ONNX model ({exc})") from None
    return names
