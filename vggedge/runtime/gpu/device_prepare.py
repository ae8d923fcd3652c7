"""Batches of image files decoded on the GPU and preprocessed into the runner's device input buffer.

:class:`DeviceImageFill` is the fill function of
:meth:`vggedge.runtime.gpu.runner.PipelineRunner.run_on_device`: for one
:class:`~vggedge.apps.batches.ImageBatch` it reads the files (in parallel, on the
shared decode pool), decodes them with :class:`~vggedge.runtime.gpu.decode.GpuDecoder`
on the slot's stream, and launches the preprocessing kernel per image straight into
``slot.device[input]``. Files the GPU cannot decode are decoded on the CPU and
uploaded; files nobody can decode become that file's error; the batch goes on.
Decoded device images stay referenced by the slot until it is filled again (by then
its stream was synchronised by ``collect``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from ...decode_pool import shared_pool
from ...errors import ImageError
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
    try:
        return Path(source).read_bytes()
    except OSError as exc:
        raise ImageError(f"{source}: cannot read image file ({exc.strerror or exc})") from None


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
                 read: Callable[[Any], bytes | np.ndarray] = read_source) -> None:
        self.spec, self.read = spec, read
        self.decoder = decoder or GpuDecoder(device)
        self.preprocessor = preprocessor or GpuPreprocessor(spec, ctx=ctx)

    def __call__(self, batch: Any, slot: Slot) -> int:
        target = slot.device[self.spec.input_name].ptr
        batch.rows.clear()
        batch.errors.clear()
        loaded = shared_pool().map(self._load, batch.sources)
        encoded = [i for i, item in enumerate(loaded) if isinstance(item, bytes)]
        names = getattr(batch, "names", None) or [str(source) for source in batch.sources]
        decoded = self.decoder.decode([loaded[i] for i in encoded], [names[i] for i in encoded], slot.stream.handle)
        by_offset = dict(zip(encoded, decoded))
        keep = []
        for offset, item in enumerate(loaded):
            if isinstance(item, ImageError):
                batch.errors[offset] = item
                continue
            row = len(batch.rows)
            try:
                if isinstance(item, np.ndarray):  # a frame already decoded on the host (BGR)
                    self.preprocessor(as_uint8(item), target, slot.stream, batch_index=row)
                else:
                    image = by_offset[offset]
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
        slot.state["decoded"] = keep  # the previous batch's images are released: that slot was collected
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
