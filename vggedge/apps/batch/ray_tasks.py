"""The Ray engine's per-batch CPU tasks: read and check files, decode them, preprocess them.

Each task takes and returns a numpy batch (a dict of columns) and never raises for
one bad file: its row keeps ``error`` and ``kind``, and the job goes on. Every task
stamps the rows with the process that ran it and its peak RSS (``decode_worker``,
``decode_rss_mb``), reported per worker in the summary.

Two routes (chosen by :func:`vggedge.apps.batch.ray_engine.decode_route`):

- CPU: :func:`decode_batch` then :func:`prepare_batch` (fused into one task) hand
  the inference actors model-ready tensors;
- GPU: :func:`check_batch` only reads and checks the files and hands the actors
  their encoded bytes, which they decode on their GPU (:mod:`.ray_actor`);
  :func:`decode_checked` is an actor's CPU fallback when its GPU cannot decode.
"""
from __future__ import annotations

import os
import socket
import time
from typing import Any

import numpy as np

from ...spec import ModelSpec
from .decode import BadImage, Limits, check_encoded, decode, read_bytes
from .inputs import Item
from .summary import peak_rss_mb


def worker() -> tuple[str, float]:
    """This process's name (``host:pid``) and its peak RSS in MiB."""
    return f"{socket.gethostname()}:{os.getpid()}", peak_rss_mb()


def ragged(values: list[Any]) -> np.ndarray:
    """A 1-D object array holding ``values`` as they are (images of different sizes, bytes)."""
    out = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        out[i] = value
    return out


def _stamped(batch: dict[str, np.ndarray], errors: list[str], kinds: list[str], seconds: list[float]
             ) -> dict[str, Any]:
    who, rss = worker()
    n = len(errors)
    return {"path": batch["path"], "error": np.array(errors, dtype=object), "kind": np.array(kinds, dtype=object),
            "decode_s": np.array(seconds), "decode_worker": np.array([who] * n, dtype=object),
            "decode_rss_mb": np.full(n, rss)}


def decode_batch(batch: dict[str, np.ndarray], limits: Limits) -> dict[str, Any]:
    """CPU task: encoded bytes -> BGR images (failures keep their row, with the reason)."""
    images, errors, kinds, seconds = [], [], [], []
    for data in batch["bytes"]:
        t0 = time.perf_counter()
        try:
            images.append(decode(read_bytes(Item("", bytes(data)), limits), limits))
            errors.append("")
            kinds.append("")
        except BadImage as exc:
            images.append(np.zeros((1, 1, 3), np.uint8))
            errors.append(str(exc))
            kinds.append(exc.kind)
        seconds.append(time.perf_counter() - t0)
    return {**_stamped(batch, errors, kinds, seconds), "image": ragged(images)}


def check_batch(batch: dict[str, np.ndarray], limits: Limits) -> dict[str, Any]:
    """CPU task of the GPU route: read and check each file, decode nothing; ``bytes`` keeps the image's own
    bytes (empty for a file refused here, whose row carries the reason)."""
    encoded, errors, kinds, seconds = [], [], [], []
    for data in batch["bytes"]:
        t0 = time.perf_counter()
        try:
            encoded.append(bytes(check_encoded(read_bytes(Item("", bytes(data)), limits), limits)))
            errors.append("")
            kinds.append("")
        except BadImage as exc:
            encoded.append(b"")
            errors.append(str(exc))
            kinds.append(exc.kind)
        seconds.append(time.perf_counter() - t0)
    return {**_stamped(batch, errors, kinds, seconds), "bytes": ragged(encoded)}


def prepare_batch(batch: dict[str, np.ndarray], spec: ModelSpec) -> dict[str, Any]:
    """CPU task: BGR images -> the model's input tensors (the one preprocessing path)."""
    from ...preprocess import prepare

    shape = tuple(spec.input_shape[1:])
    tensors = np.zeros((len(batch["path"]), *shape), np.dtype(spec.dtype))
    seconds = np.asarray(batch["decode_s"], dtype=np.float64).copy()
    for i, (image, error) in enumerate(zip(batch["image"], batch["error"])):
        if not error:
            t0 = time.perf_counter()
            prepare(np.asarray(image), spec, out=tensors[i])
            seconds[i] += time.perf_counter() - t0
    _, rss = worker()
    rss = np.maximum(np.asarray(batch["decode_rss_mb"], dtype=np.float64), rss)
    result = {k: v for k, v in batch.items() if k not in ("image", "decode_s", "decode_rss_mb")}
    return {**result, "tensor": tensors, "decode_s": seconds, "decode_rss_mb": rss}


def decode_checked(batch: dict[str, np.ndarray], spec: ModelSpec, limits: Limits) -> dict[str, Any]:
    """An actor's CPU fallback on the GPU route: :func:`check_batch`'s rows -> tensors, as the CPU route makes
    them. A file refused by the check keeps that reason; the check task keeps its name and memory."""
    decoded = decode_batch({"path": batch["path"], "bytes": batch["bytes"]}, limits)
    checked = [str(e) for e in batch["error"]]
    merged = {**{k: v for k, v in batch.items() if k != "bytes"}, "image": decoded["image"],
              "error": np.array([c or str(d) for c, d in zip(checked, decoded["error"])], dtype=object),
              "kind": np.array([str(k) if c else str(d) for c, k, d in zip(checked, batch["kind"], decoded["kind"])],
                               dtype=object),
              "decode_s": np.asarray(batch["decode_s"], dtype=np.float64) + decoded["decode_s"]}
    prepared = prepare_batch(merged, spec)
    prepared["decode_rss_mb"] = np.asarray(batch["decode_rss_mb"], dtype=np.float64)  # the actor reports its own
    return prepared
