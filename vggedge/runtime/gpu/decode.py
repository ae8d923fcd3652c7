"""JPEG decoding on the GPU with NVIDIA nvImageCodec, and the one choice between it and the CPU decode pool.

:class:`GpuDecoder` decodes a batch of encoded images into device memory
(interleaved RGB, uint8; on the GPU's hardware JPEG decoder where it has one),
with EXIF orientation applied so the pixels equal the CPU decoder's. What it
cannot take goes to the CPU decoder (:func:`vggedge.preprocess.decode_image`) on the
shared decode pool, all cores in parallel and while the GPU decodes the rest, and
what nobody can decode comes back as that file's ImageError: the job never stops
for one file.

- sorted out before the GPU sees them (:func:`gpu_reason`): non-JPEG files (PNG,
  WebP, BMP, TIFF...), CMYK/YCCK and lossless or arithmetic-coded JPEGs, and
  progressive JPEGs when ``progressive=False``;
- sorted out after: whatever nvImageCodec returns ``None`` for (corrupt, or a
  backend that refused it), or an image that is not 3-channel uint8.

nvImageCodec's own log goes quiet at default verbosity (``PYNVIMGCODEC_VERBOSITY=0``
unless set, or 2 when vggedge logs at DEBUG): every failure it would print is
handled here and reported per file. What it prints regardless, straight to stderr,
is caught: its optional JPEG 2000 and TIFF decoders missing (on every import) goes to
the DEBUG log, nvJPEG missing becomes one warning with the fix, and any other line is
shown as printed, or is part of the error when the call failed.

Images over :data:`vggedge.image_header.MAX_DECODE_PIXELS` are refused from their
header, as the CPU decoder refuses them, before any device memory is allocated. A
decoder that cannot start (a driver older than the wheel's CUDA) makes ``auto``
decode on the CPU with one warning, and ``gpu`` a BackendUnavailable naming why.

:func:`select_decoder` is the one place that chooses GPU or CPU decoding for an
app; nvImageCodec is imported lazily, and its absence is a reason, never an error.
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import re
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from ...decode_pool import DecodePool, shared_pool
from ...errors import BackendUnavailable, ConfigError, ImageError
from ...image_header import MAX_DECODE_PIXELS, jpeg_sof
from ...image_meta import is_jpeg
from .native_stderr import caught_stderr

log = logging.getLogger(__name__)
MODULE = "nvidia.nvimgcodec"
INSTALL_HINT = ("pip install nvidia-nvimgcodec-cu13 nvidia-nvjpeg (servers, CUDA 13; -cu12 for CUDA 12) "
                "or the nvidia-nvimgcodec-tegra-* wheels on Jetson, or pip install 'vggedge[gpu]'")
_SOF_NAMES = {0xC0: "baseline", 0xC1: "extended", 0xC2: "progressive", 0xC3: "lossless"}
NVJPEG_HINT = "pip install nvidia-nvjpeg (CUDA 13 builds, e.g. nvidia-nvjpeg==13.2.3.58; JetPack ships its own)"
#: cudaError_t codes an nvImageCodec decoder fails to start with, and what they mean to a user
_CUDA_START_ERRORS = {35: "no NVIDIA driver, or one older than this nvImageCodec build's CUDA (the -cu13 wheels "
                          "need driver 580 or newer; install nvidia-nvimgcodec-cu12 for a CUDA 12 driver)",
                      100: "no CUDA device is visible", 101: "the GPU ordinal is not a visible device",
                      999: "the CUDA driver failed"}


class JpegFrame(NamedTuple):
    """What a JPEG's frame header (SOFn) says."""

    marker: int
    components: int
    width: int
    height: int


def jpeg_frame(data: bytes | memoryview) -> JpegFrame | None:
    """The frame header of a JPEG, read from its markers (no copy); None when none is found."""
    view = memoryview(data)[:1 << 20]  # headers live at the front; EXIF blocks are at most 64 KiB each
    found = jpeg_sof(view)
    if found is None or found[1] + 10 > len(view):
        return None
    at = found[1]
    return JpegFrame(found[0], view[at + 9], int.from_bytes(view[at + 7:at + 9], "big"),
                     int.from_bytes(view[at + 5:at + 7], "big"))


def gpu_reason(data: bytes | memoryview, *, progressive: bool = True) -> str | None:
    """Why these bytes go to the CPU decoder instead of nvImageCodec; None when the GPU takes them."""
    if len(data) < 4 or not is_jpeg(memoryview(data)):
        return "not a JPEG"
    frame = jpeg_frame(data)
    if frame is None:
        return "JPEG without a readable frame header"
    marker, components, width, height = frame
    if width * height > MAX_DECODE_PIXELS:
        return f"{width}x{height} pixels, over the decode limit"  # the CPU decoder refuses it, naming the limit
    if marker not in (0xC0, 0xC1, 0xC2):
        return f"{_SOF_NAMES.get(marker, 'arithmetic-coded')} JPEG (SOF 0x{marker:02X})"
    if marker == 0xC2 and not progressive:
        return "progressive JPEG"
    if components not in (1, 3):
        return f"{components}-component JPEG (CMYK/YCCK)"
    return None


def nvimgcodec_reason() -> str | None:
    """None when nvImageCodec's Python package is installed, else why not (nothing is imported)."""
    try:
        found = importlib.util.find_spec(MODULE) is not None
    except (ImportError, ValueError):
        found = False
    return None if found else f"nvImageCodec is not installed ({INSTALL_HINT})"


class _NvimgcodecLines:
    """``claim`` for :func:`caught_stderr` around an nvImageCodec call: takes the lines known to be noise."""

    def __init__(self) -> None:
        self.nvjpeg_missing = False

    def __call__(self, line: str) -> bool:
        low = line.lower()
        if "nvjpeg2k" in low or "nvjpeg2000" in low or "nvtiff" in low:  # decoders of formats vggedge keeps on the CPU
            log.debug("nvImageCodec: %s", line)
            return True
        if "failed to load nvjpeg" in low:  # said once, with the right package, by import_nvimgcodec
            log.debug("nvImageCodec: %s", line)
            self.nvjpeg_missing = True
            return True
        return False


def _printed(lines: list[str]) -> str:
    return f"; it printed: {' '.join(lines)}" if lines else ""


def import_nvimgcodec() -> Any:
    """``nvidia.nvimgcodec``, imported with its log quiet unless vggedge logs at DEBUG; BackendUnavailable if absent."""
    os.environ.setdefault("PYNVIMGCODEC_VERBOSITY", "2" if log.isEnabledFor(logging.DEBUG) else "0")
    lines = _NvimgcodecLines()
    try:
        with caught_stderr(lines) as unclaimed:
            module = importlib.import_module(MODULE)
    except Exception as exc:  # ImportError, or its CUDA libraries missing
        raise BackendUnavailable(f"nvImageCodec cannot be imported ({exc}{_printed(unclaimed)}); "
                                 f"{INSTALL_HINT}") from None
    if lines.nvjpeg_missing:
        log.warning("nvImageCodec cannot load nvJPEG, so JPEGs are not decoded by the GPU's JPEG decoder (its CPU "
                    "backend decodes them instead): %s", NVJPEG_HINT)
    return module


def decoder_start_error(exc: BaseException, device: int, printed: Sequence[str] = ()) -> str:
    """One line for an nvImageCodec decoder that could not start on GPU ``device``: the error, what a CUDA
    error code means, and what the library printed on the way (``printed``)."""
    text = str(exc).strip().split(" at /")[0]  # drop the build machine's source path
    found = re.search(r"#(\d+)", text)
    meaning = _CUDA_START_ERRORS.get(int(found.group(1))) if found else None
    if meaning is None and any("libcuda" in line for line in printed):
        meaning = "no NVIDIA driver is loaded (libcuda.so)"
    return (f"nvImageCodec cannot start a decoder on GPU {device} ({text}" + (f": {meaning}" if meaning else "")
            + f"{_printed(list(printed))})")


@dataclass
class Decoded:
    """One source after decoding: a device image, a host BGR image (CPU fallback) or the error.

    Device images are interleaved uint8 RGB at ``ptr`` with ``pitch`` bytes per row;
    ``keep`` holds the library object that owns the memory (keep it until the GPU
    work reading it has finished). ``why_cpu`` says why a source went to the CPU.
    """

    ptr: int = 0
    height: int = 0
    width: int = 0
    pitch: int = 0
    host: np.ndarray | None = None
    error: ImageError | None = None
    keep: Any = None
    why_cpu: str | None = None

    @property
    def on_device(self) -> bool:
        return self.error is None and self.host is None


def device_view(image: Any) -> tuple[int, int, int, int] | None:
    """(ptr, height, width, pitch) of a 3-channel uint8 device image (``__cuda_array_interface__``), else None."""
    try:
        cai = image.__cuda_array_interface__
    except Exception:
        return None
    shape, typestr, strides = tuple(cai.get("shape", ())), cai.get("typestr"), cai.get("strides")
    if len(shape) != 3 or shape[2] != 3 or typestr not in ("|u1", "<u1", "u1"):
        return None
    h, w = int(shape[0]), int(shape[1])
    pitch = int(strides[0]) if strides else w * 3
    if strides and (int(strides[1]) != 3 or int(strides[2]) != 1):
        return None
    return int(cai["data"][0]), h, w, pitch


CpuDecode = Callable[[bytes, str], np.ndarray]


def _cpu_decode(data: bytes, source: str) -> np.ndarray:
    from ...preprocess import decode_image

    return decode_image(data, source=source)


class GpuDecoder:
    """``GpuDecoder().decode([bytes, ...], names, stream_handle)`` -> one :class:`Decoded` per source, in order.

    ``device`` is the GPU ordinal; ``progressive=False`` sends progressive JPEGs to
    the CPU (for decoders without them); ``cpu_decode(data, name)`` is the fallback
    decoder (the one CPU decoder by default); ``fancy_upsampling`` (on, as libjpeg's
    default) brings chroma close to the CPU decoder's. Cheap to construct:
    nvImageCodec is imported and its decoder made on first use. When that fails,
    ``fallback=True`` (decoder ``auto``) sends every image to the CPU decoder with one
    warning; ``fallback=False`` raises BackendUnavailable. CPU decodes run on ``pool``
    (default: the shared decode pool over every core).
    """

    def __init__(self, device: int = 0, *, progressive: bool = True, cpu_decode: CpuDecode = _cpu_decode,
                 module: Any = None, fancy_upsampling: bool = True, fallback: bool = False,
                 pool: DecodePool | None = None) -> None:
        self.device, self.progressive, self.cpu_decode, self.pool = device, progressive, cpu_decode, pool
        self.fancy_upsampling, self.fallback = fancy_upsampling, fallback
        self._module, self._decoder, self._params = module, None, None
        #: why nvImageCodec cannot decode here (it could not start and ``fallback`` is on); None while it can
        self.unavailable: str | None = None
        self.counts = {"gpu": 0, "cpu": 0, "failed": 0}

    def _ready(self) -> tuple[Any, Any, Any]:
        if self._decoder is None:
            nvimgcodec = self._module or import_nvimgcodec()
            params = nvimgcodec.DecodeParams(apply_exif_orientation=True)  # colour: sRGB (interleaved RGB)
            self._module, self._params = nvimgcodec, params
            # libjpeg (OpenCV's decoder) upsamples chroma smoothly by default; nvImageCodec's default does not
            try:
                with caught_stderr(_NvimgcodecLines()) as unclaimed:
                    self._decoder = nvimgcodec.Decoder(device_id=self.device,
                                                       options=f":fancy_upsampling={int(self.fancy_upsampling)}")
            except Exception as exc:  # RuntimeError("CUDA Runtime failure: '#35' ...") and the like
                raise BackendUnavailable(decoder_start_error(exc, self.device, unclaimed)) from None
        return self._module, self._decoder, self._params

    def _start(self) -> bool:
        """True when nvImageCodec decodes here; False (said once) when it cannot and ``fallback`` is on."""
        if self.unavailable is None:
            try:
                self._ready()
            except BackendUnavailable as exc:
                if not self.fallback:
                    raise
                self.unavailable = str(exc)
                log.warning("%s; images are decoded on the CPU instead", exc)
        return self.unavailable is None

    def decode(self, items: Sequence[bytes], names: Sequence[str] | None = None, stream: int = 0) -> list[Decoded]:
        """Decode every source; GPU work is ordered on ``stream`` (a CUDA stream handle).

        Sources for the CPU decoder run on the shared decode pool (every core), started
        before the GPU batch so both decode at once.
        """
        names = list(names) if names is not None else [f"<image {i}>" for i in range(len(items))]
        out: list[Decoded | None] = [None] * len(items)
        gpu: list[int] = []
        on_cpu: list[tuple[int, Future]] = []
        pool = self.pool or shared_pool()

        def to_cpu(i: int, reason: str) -> None:
            on_cpu.append((i, pool.submit(self._on_cpu, items[i], names[i], reason)))

        for i, data in enumerate(items):
            reason = gpu_reason(data, progressive=self.progressive) if data else "empty file"
            if reason is None and not self._start():
                reason = self.unavailable
            if reason is None:
                gpu.append(i)
            else:
                to_cpu(i, reason)
        if gpu:
            for i, image in zip(gpu, self._gpu_batch([items[i] for i in gpu], stream)):
                view = device_view(image) if image is not None else None
                if view is None:
                    to_cpu(i, "nvImageCodec could not decode it")
                else:
                    self.counts["gpu"] += 1
                    out[i] = Decoded(*view, keep=image)
        for i, future in on_cpu:  # counted here, on the caller's thread
            out[i] = future.result()
            self.counts["cpu" if out[i].error is None else "failed"] += 1
        return out  # type: ignore[return-value]

    def _gpu_batch(self, datas: list[bytes], stream: int) -> list[Any]:
        """One image (or None) per input, in order, whatever the library version returns for failures."""
        _, decoder, params = self._ready()
        try:
            images = list(decoder.decode(datas, params=params, cuda_stream=stream))
        except Exception as exc:  # a whole-batch failure: try one by one so one bad file costs only itself
            log.debug("nvImageCodec batch decode failed (%s); decoding one by one", exc)
            images = []
        if len(images) == len(datas):
            return images
        return [self._gpu_one(decoder, params, data, stream) for data in datas]  # older releases drop failures

    @staticmethod
    def _gpu_one(decoder: Any, params: Any, data: bytes, stream: int) -> Any:
        try:
            return decoder.decode(data, params=params, cuda_stream=stream)
        except Exception as exc:
            log.debug("nvImageCodec could not decode one image: %s", exc)
            return None

    def _on_cpu(self, data: bytes, name: str, reason: str) -> Decoded:
        """One source on the CPU decoder (a decode-pool thread): the host image, or its ImageError."""
        try:
            image = self.cpu_decode(data, name)
        except ImageError as exc:
            return Decoded(error=exc, why_cpu=reason)
        return Decoded(height=image.shape[0], width=image.shape[1], host=image, why_cpu=reason)


def device_preprocessing_problems(spec: Any) -> list[str]:
    """Why the CUDA preprocessing kernel cannot serve ``spec`` here (its spec, or the fatbin not built)."""
    from .gpu_preprocess import BUILD_HINT, _check_spec, default_fatbin

    problems = []
    if spec is not None:
        try:
            _check_spec(spec)
        except ConfigError as exc:
            problems.append(str(exc))
    if not default_fatbin().is_file():
        problems.append(f"the CUDA preprocessing kernels are not built ({default_fatbin()}; {BUILD_HINT})")
    return problems


@dataclass(frozen=True)
class DecoderChoice:
    """What decodes an app's images: ``kind`` "gpu" or "cpu", and why."""

    kind: str
    reason: str


def select_decoder(want: str | None = None, *, runner: Any = None, spec: Any = None,
                   available: Callable[[], str | None] | None = None, frames: bool = False) -> DecoderChoice:
    """The one choice between the GPU decoder and the CPU decode pool.

    ``want``: "auto" (the GPU when the runner is a GPU runner, nvImageCodec is
    installed and the spec's preprocessing runs on the device), "gpu" (the same
    conditions, but a missing one is a BackendUnavailable naming each) or "cpu";
    None: ``VGGEDGE_DECODER``, else "auto" (:func:`vggedge.env.decoder_wanted`).
    ``frames=True`` is the stream's choice: frames decoded on the host already are
    uploaded and preprocessed on the device (nvImageCodec is not needed), or not.
    """
    from ...env import decoder_wanted

    want = decoder_wanted(want)
    if want == "cpu":
        return DecoderChoice("cpu", "asked for the CPU " + ("preprocessing" if frames else "decode pool"))
    if runner is None or not hasattr(runner, "run_on_device"):  # nothing else matters (nor is worth installing)
        backend = getattr(runner, "backend", "") or getattr(runner, "name", "none")
        problems = [f"the backend ({backend}) runs on the CPU"]
    else:
        reason = None if frames else (available or nvimgcodec_reason)()
        problems = ([reason] if reason else []) + device_preprocessing_problems(spec)
    if problems:
        if want == "gpu":
            raise BackendUnavailable(f"GPU {'preprocessing' if frames else 'decoding'} is not possible: "
                                     + "; ".join(problems) + " (decoder 'gpu' was asked for: choose auto or cpu)")
        return DecoderChoice("cpu", "; ".join(problems))
    if frames:
        return DecoderChoice("gpu", "frames uploaded once, preprocessed on the device")
    return DecoderChoice("gpu", "nvImageCodec on the GPU, preprocessing on the device")
