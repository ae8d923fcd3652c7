"""GPU preprocessing: the CUDA kernel of ``kernels/preprocess.cu``, loaded from its fatbin with pycuda.

Build the fatbin once with ``cmake -S . -B build && cmake --build build`` (it lands
in ``build/kernels/preprocess.fatbin``; ``VGGEDGE_KERNELS_FATBIN`` points elsewhere).

:class:`GpuPreprocessor` turns a uint8 HxWx3 frame (BGR from OpenCV, or RGB
device images from nvImageCodec; any size and row pitch) into one image of the
model's input on the GPU, written straight into the runner's device input buffer:
bilinear resize with OpenCV's INTER_LINEAR half-pixel convention, either
``direct`` or ``shorter_crop`` (shorter side to ``resize_shorter``, then a centre
crop), the spec's channel order, ``x * gain - offset``, NCHW or NHWC, FP32 or FP16.
Only linear interpolation is supported. It matches :func:`vggedge.preprocess.prepare`
to within :data:`PIXEL_TOLERANCE` (1.0) in pixel units before normalisation: OpenCV
interpolates 8-bit images in fixed point and rounds to uint8, the kernel in float.
:func:`reference` is the kernel's arithmetic in numpy, for tests on CPUs.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ConfigError, ImageError
from ...spec import ModelSpec
from .cuda import CudaContext, CudaError, CudaStream, DeviceBuffer, check, driver_module

PIXEL_TOLERANCE = 1.0
KERNELS = {"float32": "vggedge_preprocess_f32", "float16": "vggedge_preprocess_f16"}
# src, h, w, pitch, dst, H, W, scale_y, scale_x, off_y, off_x, swap_rb, nhwc, gain x3, offset x3
ARG_FORMAT = "PiiiPiiffffii" + "f" * 6
BLOCK = (32, 8, 1)
FATBIN_MAGIC = 0xBA55ED50
BUILD_HINT = "build it with: cmake -S . -B build && cmake --build build"


def default_fatbin() -> Path:
    """``$VGGEDGE_KERNELS_FATBIN``, else ``build/kernels/preprocess.fatbin`` in the source checkout."""
    env = os.environ.get("VGGEDGE_KERNELS_FATBIN")
    return Path(env) if env else Path(__file__).resolve().parents[3] / "build" / "kernels" / "preprocess.fatbin"


def fatbin_targets(data: bytes, source: str = "<fatbin>") -> list[str]:
    """Architectures inside a fatbin: ``sm_XX`` for SASS, ``compute_XX`` for PTX (read from its headers)."""
    if len(data) < 16 or struct.unpack_from("<I", data, 0)[0] != FATBIN_MAGIC:
        raise CudaError(f"{source}: not a CUDA fatbin (bad magic); {BUILD_HINT}")
    header_size, size = struct.unpack_from("<HQ", data, 6)
    targets, offset, end = [], header_size, min(len(data), header_size + size)
    while offset + 32 <= end:
        kind, _, entry_header, payload = struct.unpack_from("<HHIQ", data, offset)
        arch = struct.unpack_from("<I", data, offset + 28)[0]
        targets.append(f"{'compute' if kind == 1 else 'sm'}_{arch}")
        offset += entry_header + payload
    return targets


def load_module(path: str | Path | None = None) -> Any:
    """Load the kernels' fatbin into the current context (push one first); clear errors if it cannot."""
    path = Path(path) if path is not None else default_fatbin()
    if not path.is_file():
        raise CudaError(f"{path}: GPU preprocessing kernels not built; {BUILD_HINT}")
    data = path.read_bytes()
    targets = fatbin_targets(data, str(path))
    driver = driver_module()
    try:
        return driver.module_from_buffer(data)
    except driver.Error as exc:
        major, minor = driver.Context.get_device().compute_capability()
        raise CudaError(f"{path}: cannot load on this sm_{major}{minor} GPU ({exc}); the fatbin holds "
                        f"{', '.join(targets)}. Rebuild with the GPU's architecture, e.g. "
                        f"cmake -S . -B build -DVGGEDGE_SASS_ARCHS={major}{minor} && cmake --build build") from exc


def _check_spec(spec: ModelSpec) -> None:
    pre = spec.preprocessing
    if pre.interpolation != "linear":
        raise ConfigError(f"GPU preprocessing interpolates bilinearly; the spec asks for {pre.interpolation!r}. "
                          "Use the CPU path (vggedge.preprocess) for it")
    if pre.resize not in ("direct", "shorter_crop"):
        raise ConfigError(f"GPU preprocessing resizes 'direct' or 'shorter_crop'; the spec asks for {pre.resize!r}")
    if spec.layout not in ("NCHW", "NHWC") or spec.channels != 3:
        raise ConfigError(f"GPU preprocessing writes 3-channel NCHW or NHWC; the spec has {spec.channels}-channel "
                          f"{spec.layout}")
    if spec.dtype not in KERNELS:
        raise ConfigError(f"GPU preprocessing writes float32 or float16; the spec's input dtype is {spec.dtype}")


def geometry(spec: ModelSpec, height: int, width: int) -> tuple[float, float, float, float]:
    """(scale_y, scale_x, off_y, off_x) the kernel samples with for a ``height`` x ``width`` source.

    The same sizes :func:`vggedge.preprocess.resize_for` resizes and crops to: ``direct``
    resizes to the model's size; ``shorter_crop`` resizes the shorter side to
    ``resize_shorter`` and takes the centre crop, whose first row/column is the offset.
    """
    H, W = spec.height, spec.width
    pre = spec.preprocessing
    if pre.resize == "direct":
        return height / H, width / W, 0.0, 0.0
    factor = pre.resize_shorter / min(height, width)
    nh, nw = max(H, round(height * factor)), max(W, round(width * factor))
    return height / nh, width / nw, float((nh - H) // 2), float((nw - W) // 2)


def reference(frame: np.ndarray, spec: ModelSpec, source_order: str = "BGR") -> np.ndarray:
    """The kernel's arithmetic in numpy (float32): one model input image from a uint8 HxWx3 frame.

    For tests on machines without a GPU; the kernel itself is compared with OpenCV on a GPU.
    """
    _check_spec(spec)
    h, w = frame.shape[:2]
    sy, sx, oy, ox = geometry(spec, h, w)

    def taps(n: int, offset: float, scale: float, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        f = ((np.arange(n, dtype=np.float32) + np.float32(offset) + np.float32(0.5)) * np.float32(scale)
             - np.float32(0.5))
        i = np.floor(f).astype(np.int64)
        wt = (f - i).astype(np.float32)
        wt[i < 0], i[i < 0] = 0.0, 0
        last = i >= size - 1
        wt[last], i[last] = 0.0, size - 1
        return i, np.minimum(i + 1, size - 1), wt

    y0, y1, wy = taps(spec.height, oy, sy, h)
    x0, x1, wx = taps(spec.width, ox, sx, w)
    src = frame.astype(np.float32)
    wx3 = wx[None, :, None]
    top = src[y0][:, x0] * (1 - wx3) + src[y0][:, x1] * wx3
    bottom = src[y1][:, x0] * (1 - wx3) + src[y1][:, x1] * wx3
    pixels = top * (1 - wy[:, None, None]) + bottom * wy[:, None, None]
    if source_order != spec.preprocessing.channel_order:
        pixels = pixels[:, :, ::-1]
    pre = spec.preprocessing
    std = np.asarray(pre.std, np.float64)
    gain = (pre.scale / std).astype(np.float32)
    offset = (np.asarray(pre.mean, np.float64) / std).astype(np.float32)
    hwc = pixels * gain - offset
    out = hwc.transpose(2, 0, 1) if spec.layout == "NCHW" else hwc
    return np.ascontiguousarray(out, dtype=np.dtype(spec.dtype))


class GpuPreprocessor:
    """``pre(frame, out_ptr, stream, batch_index=i)`` writes image ``i`` of the model's input batch on the GPU.

    ``frame`` is a device pointer (give ``frame_shape=(h, w)``, optionally the
    row ``pitch`` in bytes and ``source_order="RGB"`` for nvImageCodec's images),
    or a uint8 HxWx3 BGR array (pinned for a truly
    asynchronous copy), copied into a staging buffer of that stream's own
    (allocated on first use, grown only for a larger frame): work on one stream
    is ordered, so a copy never overwrites a frame another stream still reads.
    With ``ctx`` given, calls push it; otherwise push a context yourself.
    Nothing waits: read the output after synchronising ``stream``.
    """

    def __init__(self, spec: ModelSpec, *, fatbin: str | Path | None = None, ctx: CudaContext | None = None) -> None:
        _check_spec(spec)
        self.spec, self.fatbin, self.ctx = spec, fatbin, ctx
        pre = spec.preprocessing
        std = np.asarray(pre.std, dtype=np.float64)
        self.gain = tuple(float(v) for v in pre.scale / std)
        self.offset = tuple(float(v) for v in np.asarray(pre.mean, dtype=np.float64) / std)
        self.nhwc = int(spec.layout == "NHWC")
        self.out_itemsize = np.dtype(spec.dtype).itemsize
        self._module: Any = None
        self._kernel: Any = None
        self._staging: dict[int, DeviceBuffer] = {}  # stream handle -> that stream's staging buffer

    def load(self) -> "GpuPreprocessor":
        """Load the fatbin and look up the kernel (done by the first call otherwise)."""
        if self._kernel is None:
            with self._pushed(), check("looking up the preprocessing kernel"):
                self._module = load_module(self.fatbin)
                self._kernel = self._module.get_function(KERNELS[self.spec.dtype])
                self._kernel.prepare(ARG_FORMAT)
        return self

    @property
    def image_bytes(self) -> int:
        """Bytes of one output image (C x H x W of the spec's dtype)."""
        return 3 * self.spec.height * self.spec.width * self.out_itemsize

    def __call__(self, frame: int | np.ndarray, out_ptr: int, stream: CudaStream, *, batch_index: int = 0,
                 frame_shape: tuple[int, int] | None = None, pitch: int | None = None,
                 source_order: str = "BGR") -> None:
        if source_order not in ("BGR", "RGB"):
            raise ImageError(f"source_order={source_order!r}: expected 'BGR' or 'RGB'")
        self.load()
        with self._pushed():
            src, (h, w), step = self._source(frame, stream, frame_shape, pitch)
            if isinstance(frame, np.ndarray):
                source_order = "BGR"  # host frames are OpenCV's
            dst = int(out_ptr) + batch_index * self.image_bytes
            H, W = self.spec.height, self.spec.width
            scale_y, scale_x, off_y, off_x = geometry(self.spec, h, w)
            swap = int(source_order != self.spec.preprocessing.channel_order)
            grid = ((W + BLOCK[0] - 1) // BLOCK[0], (H + BLOCK[1] - 1) // BLOCK[1])
            with check("launching the preprocessing kernel"):
                self._kernel.prepared_async_call(grid, BLOCK, stream.raw, src, h, w, step, dst, H, W,
                                                 scale_y, scale_x, off_y, off_x, swap, self.nhwc,
                                                 *self.gain, *self.offset)

    def _source(self, frame: int | np.ndarray, stream: CudaStream, shape: tuple[int, int] | None,
                pitch: int | None) -> tuple[int, tuple[int, int], int]:
        if isinstance(frame, np.ndarray):
            if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
                raise ImageError(f"GPU preprocessing takes uint8 HxWx3 BGR frames, got {frame.dtype} {frame.shape}")
            frame = np.ascontiguousarray(frame)
            staging = self._staging.get(stream.handle)
            if staging is None or staging.nbytes < frame.nbytes:
                if staging is not None:
                    stream.synchronize()  # the old buffer may still be read by an earlier launch
                    staging.free()
                staging = self._staging[stream.handle] = DeviceBuffer(frame.nbytes)
            staging.upload_async(frame, stream)
            return staging.ptr, frame.shape[:2], frame.shape[1] * 3
        if shape is None:
            raise ImageError("a device-pointer frame needs frame_shape=(height, width)")
        h, w = int(shape[0]), int(shape[1])
        if h < 1 or w < 1:
            raise ImageError(f"frame_shape {shape} is empty")
        if pitch is not None and pitch < w * 3:
            raise ImageError(f"row pitch {pitch} is below the row's {w * 3} bytes (width {w} x 3)")
        return int(frame), (h, w), int(pitch or w * 3)

    def _pushed(self):
        from contextlib import nullcontext

        return self.ctx if self.ctx is not None else nullcontext()

    def free(self) -> None:
        """Wait for the context's work, then free the staging buffers and drop the module (safe twice).

        Runs with ``ctx`` pushed when one was given (else push a context yourself)."""
        if self._staging or self._module is not None:
            with self._pushed():
                with check("synchronising before freeing the preprocessing buffers"):
                    driver_module().Context.synchronize()
                for staging in self._staging.values():
                    staging.free()
        self._staging, self._kernel, self._module = {}, None, None

    def __enter__(self) -> "GpuPreprocessor":
        return self.load()

    def __exit__(self, *exc: object) -> None:
        self.free()
