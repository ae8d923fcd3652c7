"""Batches of image files decoded on the GPU and preprocessed into the runner's device input buffer.

:class:`DeviceImageFill` is the fill function of
:meth:`vggedge.runtime.gpu.runner.PipelineRunner.run_on_device`: for one
:class:`~vggedge.apps.batches.ImageBatch` it reads the files (in parallel, on the
shared decode pool), decodes them with :class:`~vggedge.runtime.gpu.decode.GpuDecoder`
on the slot's stream, and launches the preprocessing kernel per image straight into
``slot.device[input]``. Files the GPU cannot decode are decoded on the CPU and
uploaded; files nobody can decode become that file's error; the batch goes on.
Decoded device images stay referenced by the slot until it is filled again (by then
its stream was synchronised by ``collect``). A batch whose images together exceed
``pixel_budget`` decoded pixels is decoded in parts, in order: before the next part the
slot's stream is synchronised and the last part's images are freed, so a batch of
huge images cannot hold more than about the budget in device memory at once.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ...decode_pool import shared_pool
from ...errors import ImageError
from ...image_header import image_size
from ...spec import ModelSpec
from .decode import GpuDecoder
from .gpu_preprocess import GpuPreprocessor
from .pipeline import Slot


def read_source(source: Any) -> bytes | np.ndarray:
    """A source's encoded bytes (paths) or the frame itself (arrays); ImageError naming an unreadable file."""
    if isinstance(source, np.ndarray):
        return source
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    from ...preprocess import read_file

    return read_file(source)


#: decoded pixels one part of a batch may hold at once (3 bytes each: 1.5 GiB); twice the largest image allowed
PIXEL_BUDGET = 2**29


def pixel_parts(sizes: list[int], budget: int) -> list[range]:
    """Consecutive index ranges whose ``sizes`` (pixels) add up to at most ``budget``; one item at least each."""
    parts, start, total = [], 0, 0
    for i, size in enumerate(sizes):
        if i > start and total + size > budget:
            parts.append(range(start, i))
            start, total = i, 0
        total += size
    if sizes:
        parts.append(range(start, len(sizes)))
    return parts


def pixels_of(data: bytes) -> int:
    """Width x height from the image's header (0 when it names none: the decoders refuse or size it)."""
    size = image_size(memoryview(data))
    return size[0] * size[1] if size else 0


def as_uint8(image: np.ndarray) -> np.ndarray:
    """8-bit BGR for the kernel: 16-bit images (decoded to float 0-255 on the CPU) are rounded to 8 bits."""
    if image.dtype == np.uint8:
        return image
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


class DeviceImageFill:
    """``fill(batch, slot) -> rows``: decode on the GPU, preprocess on the device, into the slot's input buffer.

    ``batch`` is an :class:`~vggedge.apps.batches.ImageBatch` (``sources``; ``rows``
    and ``errors`` are filled here, as the CPU prepare function fills them); an
    optional ``names`` list names the sources in errors. ``read(source)`` gives a
    source's encoded bytes (or a decoded BGR frame).
    """

    def __init__(self, spec: ModelSpec, ctx: Any, *, decoder: GpuDecoder | None = None,
                 preprocessor: GpuPreprocessor | None = None, device: int = 0,
                 read: Callable[[Any], bytes | np.ndarray] = read_source, pixel_budget: int = PIXEL_BUDGET) -> None:
        self.spec, self.read, self.pixel_budget = spec, read, pixel_budget
        self.decoder = decoder or GpuDecoder(device)
        self.preprocessor = preprocessor or GpuPreprocessor(spec, ctx=ctx)

    def __call__(self, batch: Any, slot: Slot) -> int:
        target = slot.device[self.spec.input_name].ptr
        slot.state.pop("decoded", None)  # this slot's last batch was collected: its images can go before new ones
        batch.rows.clear()
        batch.errors.clear()
        loaded = shared_pool().map(self._load, batch.sources)
        encoded = [i for i, item in enumerate(loaded) if isinstance(item, bytes)]
        names = getattr(batch, "names", None) or [str(source) for source in batch.sources]
        parts = iter(pixel_parts([pixels_of(loaded[i]) for i in encoded], self.pixel_budget))
        by_offset: dict[int, Any] = {}
        keep: list[Any] = []
        for offset, item in enumerate(loaded):
            if isinstance(item, ImageError):
                batch.errors[offset] = item
                continue
            row = len(batch.rows)
            try:
                if isinstance(item, np.ndarray):  # a frame already decoded on the host (BGR)
                    self.preprocessor(as_uint8(item), target, slot.stream, batch_index=row)
                else:
                    if offset not in by_offset:  # the next part: decode it (parts run in offset order)
                        if keep:  # the kernels reading the last part must finish before its memory goes
                            slot.stream.synchronize()
                            keep, image = [], None
                        part = [encoded[i] for i in next(parts)]
                        by_offset.update(zip(part, self.decoder.decode([loaded[i] for i in part],
                                                                       [names[i] for i in part], slot.stream.handle)))
                    image = by_offset.pop(offset)
                    if image.error is not None:
                        raise image.error
                    if image.on_device:
                        self.preprocessor(image.ptr, target, slot.stream, batch_index=row,
                                          frame_shape=(image.height, image.width), pitch=image.pitch,
                                          source_order="RGB")
                        keep.append(image.keep)
                    else:
                        self.preprocessor(as_uint8(image.host), target, slot.stream, batch_index=row)
            except ImageError as exc:  # this file only: the batch goes on
                batch.errors[offset] = exc
                continue
            batch.rows.append(offset)
        slot.state["decoded"] = keep  # until this slot is collected and filled again
        if not batch.rows:  # nothing decodable: one blank row keeps the batch (and the order) flowing
            self.preprocessor(np.zeros((1, 1, 3), np.uint8), target, slot.stream, batch_index=0)
            return 1
        return len(batch.rows)

    def _load(self, source: Any) -> bytes | np.ndarray | ImageError:
        try:
            return self.read(source)
        except ImageError as exc:
            return exc

    def free(self) -> None:
        """Release the preprocessor's staging buffers (safe twice)."""
        self.preprocessor.free()


class FrameFill:
    """``fill(frames, slot) -> rows``: decoded BGR frames (``.image``) uploaded once, preprocessed on the device.

    For live streams on GPU runners: the raw uint8 frame crosses to the GPU (its only
    copy) and the kernel resizes and normalises it into the slot's input buffer.
    ``on_frame(frame)`` is called as each frame is taken (the stream stamps it).
    """

    def __init__(self, spec: ModelSpec, ctx: Any, on_frame: Callable[[Any], None] = lambda frame: None) -> None:
        self.spec, self.on_frame = spec, on_frame
        self.preprocessor = GpuPreprocessor(spec, ctx=ctx)

    def __call__(self, frames: list, slot: Slot) -> int:
        target = slot.device[self.spec.input_name].ptr
        for i, frame in enumerate(frames):
            self.on_frame(frame)
            self.preprocessor(frame.image, target, slot.stream, batch_index=i)
        return len(frames)

    def free(self) -> None:
        self.preprocessor.free()


def frame_fill(runner: Any, spec: ModelSpec, on_frame: Callable[[Any], None] = lambda frame: None,
               decoder: str | None = None) -> FrameFill | None:
    """A :class:`FrameFill` when the frame choice (:func:`~.decode.select_decoder` with ``frames=True``)
    says GPU, else None; ``decoder`` "gpu" where that is not possible raises BackendUnavailable."""
    from .decode import select_decoder

    if select_decoder(decoder, runner=runner, spec=spec, frames=True).kind != "gpu":
        return None
    return FrameFill(spec, runner.ctx, on_frame)
