"""The one batching helper: images -> ``Runner.run()`` with a prepare function -> per-image results.

Classify, demo, compare and the end-to-end benchmark all go through here, so
decoding and preprocessing of the next batch overlap inference of the current
one on every backend. A file that cannot be decoded does not stop the job: its
row is skipped, the batch runs with the rest, and the error comes back in the
file's place (or is raised, with ``strict``). Outputs are copied at most once
(by ``run(copy=True)``); ``copy=False`` hands out views valid until the next
batch is requested.
"""
from __future__ import annotations

import logging
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Sequence

import numpy as np

from ..checks import count
from ..decode_pool import DecodePool, shared_pool
from ..errors import ImageError
from ..preprocess import ImageLike, list_images
from ..runtime.base import BatchOutput, Runner
from ..spec import ModelSpec

log = logging.getLogger(__name__)


@dataclass
class ImageBatch:
    """One batch handed to ``Runner.run()``: its sources, which rows were written, which sources failed.

    ``start`` is the index of the first source in the whole job; ``rows`` lists
    source offsets in row order (filled by the prepare function); ``errors`` maps
    an offset to the reason that source could not be prepared.
    """

    start: int
    sources: list[ImageLike]
    rows: list[int] = field(default_factory=list)
    errors: dict[int, ImageError] = field(default_factory=dict)


#: prepare(batch, {input name: host array at max batch}) -> rows written; fills batch.rows / batch.errors
ImagePrepareFn = Callable[[ImageBatch, "dict[str, np.ndarray]"], int]


@dataclass
class ImageResult:
    """One source's outcome, in input order: its row of each output, or the error that stopped it."""

    index: int
    source: ImageLike
    outputs: Optional[dict[str, np.ndarray]] = None
    error: Optional[ImageError] = None

    @property
    def ok(self) -> bool:
        return self.error is None


def expand_images(items: Iterable[str | Path | np.ndarray]) -> list[ImageLike]:
    """Paths and folders -> image sources: a folder gives its images (sorted, recursive); files stay as given.

    Missing files stay in the list, so each is reported in its place. Nothing at all
    to classify (no items, or only empty folders) is an ImageError naming what was given.
    """
    items = list(items)
    out: list[ImageLike] = []
    for item in items:
        if not isinstance(item, np.ndarray) and Path(item).is_dir():
            out += list_images(item)
        else:
            out.append(item)
    if not out:
        given = ", ".join(str(i) for i in items[:3]) or "nothing"
        raise ImageError(f"no images found in {given}; expected image files or folders holding "
                         "JPEG, PNG, BMP, TIFF or WebP files")
    return out


def image_batches(images: Iterable[ImageLike], size: int) -> Iterator[ImageBatch]:
    """Consecutive batches of at most ``size`` sources (lazy: a generator of sources works)."""
    count("batch_size", size)
    chunk: list[ImageLike] = []
    start = 0
    for image in images:
        chunk.append(image)
        if len(chunk) == size:
            yield ImageBatch(start, chunk)
            start, chunk = start + size, []
    if chunk:
        yield ImageBatch(start, chunk)


def prepare_images(spec: ModelSpec, *, reduced_decode: bool | None = None,
                   pool: DecodePool | None = None) -> ImagePrepareFn:
    """The default prepare function: decode and preprocess the batch's sources in parallel, good rows first.

    Decoding runs on ``pool`` (default: the process-wide :func:`vggedge.decode_pool.shared_pool`,
    every core). ``reduced_decode`` reaches the decoder: None follows the process-wide switch
    (:func:`vggedge.preprocess.reduced_decode_enabled`), True/False overrides it.
    """
    def prepare_batch(batch: ImageBatch, inputs: dict[str, np.ndarray]) -> int:
        target = inputs[spec.input_name]
        rows, errors = (pool or shared_pool()).prepare_into(batch.sources, spec, target,
                                                            reduced_decode=reduced_decode)
        batch.rows[:] = rows
        batch.errors.clear()
        batch.errors.update(errors)
        if not batch.rows:  # nothing decodable: one blank row keeps the batch (and the order) flowing
            target[0] = 0
            return 1
        return len(batch.rows)
    return prepare_batch


def iter_batches(runner: Runner, spec: ModelSpec, images: Iterable[ImageLike], batch_size: int, *,
                 prepare_fn: Optional[ImagePrepareFn] = None, copy: bool = True, decoder: str | None = None
                 ) -> Iterator[tuple[ImageBatch, BatchOutput]]:
    """(batch, output) pairs in order, through ``runner.run()`` on an active runner.

    Batches hold at most ``batch_size`` sources, capped at what the runner takes
    (a fixed-batch model's batch); short batches are padded by the runner. Without
    a ``prepare_fn``, :func:`device_fill` chooses where images decode (``decoder``:
    "auto", "gpu" or "cpu"; None: ``VGGEDGE_DECODER``, else auto): on a GPU runner with
    nvImageCodec they are decoded and preprocessed on the device, else on the CPU decode pool.
    """
    size = min(count("batch_size", batch_size), runner.batch_range()[1])
    fill = device_fill(runner, spec, decoder) if prepare_fn is None else None
    if fill is not None:
        outputs = runner.run_on_device(image_batches(images, size), fill, copy=copy)  # type: ignore[attr-defined]
    else:
        outputs = runner.run(image_batches(images, size), prepare_fn or prepare_images(spec), copy=copy)
    try:
        with closing(outputs) as outs:
            for out in outs:
                yield out.tag, out
    finally:
        if fill is not None:
            fill.free()


def device_fill(runner: Runner, spec: ModelSpec, decoder: str | None = None):
    """The GPU fill function (decode + preprocess on the device) when the one decoder choice says GPU, else None."""
    from ..runtime.device_path import image_fill

    return image_fill(runner, spec, decoder)


def split(batch: ImageBatch, out: BatchOutput, *, strict: bool = False) -> Iterator[ImageResult]:
    """Per-source results of one batch, in source order (views into ``out``: no copy)."""
    row_of = {offset: row for row, offset in enumerate(batch.rows)}
    for offset, source in enumerate(batch.sources):
        error = batch.errors.get(offset)
        if error is not None:
            if strict:
                raise error
            yield ImageResult(batch.start + offset, source, None, error)
        else:
            row = row_of[offset]
            yield ImageResult(batch.start + offset, source, {k: v[row] for k, v in out.outputs.items()})


def run_images(runner: Runner, spec: ModelSpec, images: Iterable[ImageLike], batch_size: int, *,
               strict: bool = False, prepare_fn: Optional[ImagePrepareFn] = None,
               copy: bool = True, decoder: str | None = None) -> Iterator[ImageResult]:
    """Every source's result in order; failed sources come back with their error (raised with ``strict``)."""
    for batch, out in iter_batches(runner, spec, images, batch_size, prepare_fn=prepare_fn, copy=copy,
                                   decoder=decoder):
        yield from split(batch, out, strict=strict)


def gather(results: Iterable[ImageResult], output: str, total: int) -> tuple[np.ndarray, list[ImageResult]]:
    """Rows of one output for the sources that worked, copied once into one array, and the failures."""
    rows: Optional[np.ndarray] = None
    failed: list[ImageResult] = []
    n = 0
    for result in results:
        if not result.ok:
            failed.append(result)
            continue
        row = result.outputs[output]
        if rows is None:
            rows = np.empty((total, *row.shape), dtype=np.float32)
        rows[n] = row
        n += 1
    if rows is None:
        return np.empty((0,), np.float32), failed
    return rows[:n], failed


__all__: Sequence[str] = ["ImageBatch", "ImagePrepareFn", "ImageResult", "expand_images", "gather",
                          "image_batches", "iter_batches", "prepare_images", "run_images", "split"]
