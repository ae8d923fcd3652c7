"""Explicitly owned CUDA resources on top of pycuda, imported only when used.

Nothing here touches the GPU at import: pycuda is imported inside functions, and
never as ``pycuda.autoinit`` (which makes a context of its own). We retain the
device's *primary* context, the one TensorRT and onnxruntime use too.

Primary contexts are retained once per device per process (:func:`primary_context`) and
never detached: a detach from a thread where the context is not pushed leaves it
current there (or, from another thread, silently leaks the retain), and the
driver releases everything at process exit anyway.

Streams are created non-blocking (``CU_STREAM_NON_BLOCKING``): all ordering is
by events, and a blocking stream would serialise with the legacy default stream
that libraries (cuDNN, cuBLAS, onnxruntime) use inside.

Threads: a CUDA context is current per thread. Every thread that touches CUDA
enters ``with ctx:`` (a push) before any call and leaves it (a pop) after;
contexts nest, so a runner method may push again inside a caller's push. Create
and free resources while the context is pushed, and release the context from the
thread that opened it.

Every resource has an explicit ``free()`` (safe twice) and is a context manager;
using a freed resource raises :class:`CudaError`. (pycuda frees what is garbage
collected too, but only an explicit free says when.)
"""
from __future__ import annotations

import importlib.util
import sys
import threading
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np

from ...errors import BackendUnavailable, VggEdgeError


class CudaError(VggEdgeError):
    """A CUDA driver call failed; the message names the operation and the driver's reason."""


class CudaOutOfMemory(CudaError):
    """The GPU has no room for an allocation; lower the batch size or the number of slots."""


def cuda_available() -> str | None:
    """None when pycuda is installed and the driver sees a GPU, else the reason (no context is made)."""
    try:
        found = importlib.util.find_spec("pycuda") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        return "Python package 'pycuda' is not installed (pip install 'vggedge[gpu]')"
    from ..select import gpu_reason

    return gpu_reason()


def require_cuda(who: str) -> None:
    """Raise BackendUnavailable naming ``who`` when :func:`cuda_available` gives a reason."""
    reason = cuda_available()
    if reason is not None:
        raise BackendUnavailable(f"{who} cannot run here: {reason}")


_INITIALISED: Any = None  # the pycuda.driver module cuInit ran for


def driver_module() -> Any:
    """``pycuda.driver``, initialised on first use; BackendUnavailable if pycuda cannot load."""
    global _INITIALISED
    try:
        import pycuda.driver as driver
    except Exception as exc:  # ImportError, or a broken install (libcuda missing, CUDA mismatch)
        raise BackendUnavailable(f"pycuda cannot be imported ({exc}); pip install 'vggedge[gpu]' "
                                 "on a machine with the NVIDIA driver") from None
    if driver is not _INITIALISED:
        with check("cuInit"):
            driver.init()
        _INITIALISED = driver
    return driver


@contextmanager
def check(what: str) -> Iterator[None]:
    """Turn a pycuda error raised inside the block into :class:`CudaError` naming ``what``."""
    try:
        yield
    except VggEdgeError:
        raise
    except Exception as exc:
        driver = sys.modules.get("pycuda.driver")
        if driver is None or not isinstance(exc, getattr(driver, "Error", ())):
            raise
        if isinstance(exc, getattr(driver, "MemoryError", ())) or "out of memory" in str(exc):
            raise CudaOutOfMemory(f"{what}: out of GPU memory ({exc}); use a smaller batch or fewer slots") from exc
        raise CudaError(f"{what} failed: {exc}") from exc


def check_ok(ok: object, what: str, hint: str = "") -> None:
    """Raise CudaError when a call that reports failure by a false return (TensorRT) returned false."""
    if not ok:
        raise CudaError(f"{what} returned failure" + (f"; {hint}" if hint else ""))


_PRIMARY: dict[int, Any] = {}  # device ordinal -> its retained primary context (one retain per process)
_PRIMARY_LOCK = threading.Lock()
STREAM_NON_BLOCKING = 1  # CU_STREAM_NON_BLOCKING


def primary_context(device: int) -> Any:
    """The device's primary context, retained on first use and kept for the life of the process."""
    with _PRIMARY_LOCK:
        ctx = _PRIMARY.get(device)
        if ctx is None:
            driver = driver_module()
            count = driver.Device.count()
            if not 0 <= device < count:
                raise BackendUnavailable(f"CUDA device {device} does not exist; this machine has {count}")
            with check(f"retaining the primary context of device {device}"):
                ctx = _PRIMARY[device] = driver.Device(device).retain_primary_context()
        return ctx


def current_context() -> Any:
    """The context pycuda has current on this thread (its context stack), or None: nothing left pushed."""
    with check("querying the current CUDA context"):
        return driver_module().Context.get_current()


def driver_current_context() -> int:
    """The driver's current context handle on this thread (``cuCtxGetCurrent``), 0 for none; for checks.

    Libraries on the CUDA runtime (onnxruntime, cuDNN) bind the primary context to the
    threads that call them, so this can be non-zero after our own pushes and pops balanced.
    """
    import ctypes

    handle = ctypes.c_void_p(0)
    status = ctypes.CDLL("libcuda.so.1").cuCtxGetCurrent(ctypes.byref(handle))
    if status != 0:
        raise CudaError(f"cuCtxGetCurrent failed with CUDA error {status}")
    return int(handle.value or 0)


class CudaContext:
    """The primary context of one device: ``open()`` takes it, ``with ctx:`` pushes and pops it."""

    def __init__(self, device: int = 0) -> None:
        self.device = int(device)
        self._ctx: Any = None
        self._lock = threading.Lock()

    def open(self) -> "CudaContext":
        """Take the device's primary context, retained once per process (idempotent)."""
        with self._lock:
            if self._ctx is None:
                self._ctx = primary_context(self.device)
        return self

    @property
    def is_open(self) -> bool:
        return self._ctx is not None

    def push(self) -> None:
        """Make the context current on this thread (nests)."""
        if self._ctx is None:
            raise CudaError(f"CUDA context of device {self.device} used before open() or after release()")
        with check("pushing the CUDA context"):
            self._ctx.push()

    def pop(self) -> None:
        """Undo one :meth:`push` on this thread."""
        with check("popping the CUDA context"):
            driver_module().Context.pop()

    def __enter__(self) -> "CudaContext":
        self.push()
        return self

    def __exit__(self, *exc: object) -> None:
        self.pop()

    def synchronize(self) -> None:
        """Wait for all work in the context (push it first)."""
        with check("synchronising the CUDA context"):
            driver_module().Context.synchronize()

    def device_info(self) -> dict[str, Any]:
        """Name, compute capability and memory of the device."""
        driver = driver_module()
        dev = driver.Device(self.device)
        major, minor = dev.compute_capability()
        return {"name": dev.name(), "compute_capability": f"{major}.{minor}", "sm": f"sm_{major}{minor}",
                "total_memory": int(dev.total_memory())}

    def release(self) -> None:
        """Stop using the context (safe twice). The process keeps its one retain: nothing is detached."""
        with self._lock:
            self._ctx = None


class _Resource:
    """Shared free()/context-manager behaviour of the small resource classes."""

    kind = "resource"

    def _alive(self, handle: Any) -> Any:
        if handle is None:
            raise CudaError(f"{self.kind} used after free()")
        return handle

    def free(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.free()


class PinnedBuffer(_Resource):
    """Page-locked host memory as a numpy array (``.array``), needed for asynchronous copies."""

    kind = "pinned buffer"

    def __init__(self, shape: tuple[int, ...], dtype: Any) -> None:
        driver = driver_module()
        self.shape = tuple(int(d) for d in shape)
        self.dtype = np.dtype(dtype)
        with check(f"allocating pinned host memory {self.shape} {self.dtype}"):
            self._array = driver.pagelocked_empty(self.shape, self.dtype)

    @property
    def array(self) -> np.ndarray:
        return self._alive(self._array)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def free(self) -> None:
        array, self._array = getattr(self, "_array", None), None
        if array is not None:
            with check("freeing pinned host memory"):
                array.base.free()


class DeviceBuffer(_Resource):
    """``nbytes`` of device memory; ``ptr`` is the raw pointer TensorRT and onnxruntime take."""

    kind = "device buffer"

    def __init__(self, nbytes: int) -> None:
        driver = driver_module()
        self.nbytes = int(nbytes)
        with check(f"allocating {self.nbytes / 2**20:.1f} MiB of device memory"):
            self._alloc = driver.mem_alloc(max(self.nbytes, 1))

    @property
    def ptr(self) -> int:
        return int(self._alive(self._alloc))

    def upload_async(self, host: np.ndarray, stream: "CudaStream") -> None:
        """Enqueue a copy of ``host`` (pinned, contiguous, at most ``nbytes``) to this buffer."""
        self._fits(host)
        with check("enqueueing a host-to-device copy"):
            driver_module().memcpy_htod_async(self.ptr, host, stream.raw)

    def download_async(self, host: np.ndarray, stream: "CudaStream") -> None:
        """Enqueue a copy of the first ``host.nbytes`` bytes of this buffer into ``host`` (pinned)."""
        self._fits(host)
        with check("enqueueing a device-to-host copy"):
            driver_module().memcpy_dtoh_async(host, self.ptr, stream.raw)

    def _fits(self, host: np.ndarray) -> None:
        if host.nbytes > self.nbytes or not host.flags.c_contiguous:
            raise CudaError(f"copy of {host.nbytes} bytes (contiguous={host.flags.c_contiguous}) "
                            f"does not fit a {self.nbytes}-byte device buffer")

    def free(self) -> None:
        alloc, self._alloc = getattr(self, "_alloc", None), None
        if alloc is not None:
            with check("freeing device memory"):
                alloc.free()


class CudaStream(_Resource):
    """A non-blocking CUDA stream; ``handle`` is the integer TensorRT and onnxruntime take."""

    kind = "stream"

    def __init__(self) -> None:
        driver = driver_module()
        with check("creating a CUDA stream"):
            self._stream = driver.Stream(flags=STREAM_NON_BLOCKING)

    @property
    def raw(self) -> Any:
        """The pycuda Stream (for pycuda calls)."""
        return self._alive(self._stream)

    @property
    def handle(self) -> int:
        return int(self.raw.handle)

    def synchronize(self) -> None:
        with check("synchronising a CUDA stream"):
            self.raw.synchronize()

    def is_done(self) -> bool:
        with check("querying a CUDA stream"):
            return bool(self.raw.is_done())

    def wait_for(self, event: "CudaEvent") -> None:
        """Make later work on this stream wait for ``event`` (on the GPU, not the host)."""
        with check("making a stream wait for an event"):
            self.raw.wait_for_event(event.raw)

    def free(self) -> None:
        # pycuda destroys the stream when its last reference goes; drop ours.
        self._stream = None


class CudaEvent(_Resource):
    """A timing event: ``record(stream)``, then ``end.elapsed_ms(start)`` once both completed."""

    kind = "event"

    def __init__(self) -> None:
        driver = driver_module()
        with check("creating a CUDA event"):
            self._event = driver.Event()

    @property
    def raw(self) -> Any:
        return self._alive(self._event)

    def record(self, stream: CudaStream) -> None:
        with check("recording a CUDA event"):
            self.raw.record(stream.raw)

    def synchronize(self) -> None:
        with check("waiting for a CUDA event"):
            self.raw.synchronize()

    def elapsed_ms(self, start: "CudaEvent") -> float:
        """Milliseconds of GPU time from ``start`` to this event."""
        with check("reading the time between two CUDA events"):
            return float(self.raw.time_since(start.raw))

    def free(self) -> None:
        self._event = None
