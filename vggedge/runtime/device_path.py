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


def select_decoder(want: str = "auto", *, runner: Any = None, spec: ModelSpec | None = None) -> Any:
    """The one choice between the GPU decoder and the CPU decode pool (see runtime/gpu/decode.py)."""
    from .gpu.decode import select_decoder as choose

    return choose(want, runner=runner, spec=spec)


def image_fill(runner: Any, spec: ModelSpec, decoder: str = "auto",
               read: Callable[[Any], bytes] | None = None) -> Any:
    """``fill(batch, slot)`` decoding image files on the GPU straight into the slot's input buffer, when the
    decoder choice says GPU; else None (the CPU decode pool prepares the batch)."""
    choice = select_decoder(decoder, runner=runner, spec=spec)
    log.debug("decoding on the %s: %s", choice.kind, choice.reason)
    if choice.kind != "gpu":
        return None
    from .gpu.device_prepare import DeviceImageFill

    extra = {} if read is None else {"read": read}
    return DeviceImageFill(spec, runner.ctx, device=runner.runner_options.device, **extra)


def frame_fill(runner: Any, spec: ModelSpec, on_frame: Callable[[Any], None] = lambda frame: None) -> Any:
    """A fill that uploads captured frames once and preprocesses them on the GPU, or None off a GPU runner."""
    if not hasattr(runner, "run_on_device"):  # a CPU runner: nothing of the GPU backend is imported
        return None
    from .gpu.device_prepare import frame_fill as make

    return make(runner, spec, on_frame)
