"""The GPU backend's face to applications: where images are decoded, and filling a runner's device input.

Applications import nothing from inside runtime/gpu/ (tests/test_imports.py): the
decoder choice and the device-side fill functions come through here, imported
lazily so that a CPU machine never loads a GPU package.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

from ..spec import ModelSpec

log = logging.getLogger(__name__)


def select_decoder(want: str | None = None, *, runner: Any = None, spec: ModelSpec | None = None) -> Any:
    """The one choice between the GPU decoder and the CPU decode pool (see runtime/gpu/decode.py).

    Returns a ``DecoderChoice`` (``kind`` "gpu" or "cpu", and ``reason``); ``want`` None means
    ``VGGEDGE_DECODER``, else "auto"; "gpu" where it is not possible raises BackendUnavailable naming why.
    """
    from .gpu.decode import select_decoder as choose

    return choose(want, runner=runner, spec=spec)


def image_fill(runner: Any, spec: ModelSpec, decoder: str | None = None,
               read: Callable[[Any], bytes] | None = None) -> Any:
    """``fill(batch, slot)`` decoding image files on the GPU straight into the slot's input buffer, when the
    decoder choice says GPU; else None (the CPU decode pool prepares the batch). Under ``auto``, a GPU decoder
    that cannot start leaves decoding to the CPU (uploaded, preprocessed on the device) with one warning."""
    from ..env import decoder_wanted

    choice = select_decoder(decoder, runner=runner, spec=spec)
    log.debug("decoding on the %s: %s", choice.kind, choice.reason)
    if choice.kind != "gpu":
        return None
    from .gpu.decode import GpuDecoder
    from .gpu.device_prepare import DeviceImageFill

    device = runner.runner_options.device
    extra = {} if read is None else {"read": read}
    return DeviceImageFill(spec, runner.ctx, device=device,
                           decoder=GpuDecoder(device, fallback=decoder_wanted(decoder) == "auto"), **extra)


def select_frame_path(want: str | None = None, *, runner: Any = None, spec: ModelSpec | None = None) -> Any:
    """Where a stream's captured frames are preprocessed: "gpu" (uploaded once, the CUDA kernel) or "cpu".

    The same ``want`` and errors as :func:`select_decoder`; nvImageCodec is not needed
    (frames come decoded from the capture).
    """
    from .gpu.decode import select_decoder as choose

    return choose(want, runner=runner, spec=spec, frames=True)


def frame_fill(runner: Any, spec: ModelSpec, on_frame: Callable[[Any], None] = lambda frame: None,
               decoder: str | None = None) -> Any:
    """A fill that uploads captured frames once and preprocesses them on the GPU when
    :func:`select_frame_path` says so, else None (``decoder`` as there)."""
    from .gpu.device_prepare import frame_fill as make

    return make(runner, spec, on_frame, decoder)
