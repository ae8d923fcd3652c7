"""Fake ``pycuda.driver``, ``tensorrt`` and ``onnxruntime`` for the GPU runtime's tests (no GPU needed).

Device memory is host memory and work runs at enqueue time: the fakes check our
calls, buffer handling, ordering and result routing, not real concurrency.
``driver.log`` records the calls whose order matters (synchronise, free, session drop).
"""
from __future__ import annotations

import itertools
import os
import types
import weakref
from types import SimpleNamespace

import numpy as np

from vggedge.runtime.gpu.pipeline import TensorSpec


class Pinned(bytearray):
    def free(self) -> None:
        self.freed = True


class FakeDriver(types.ModuleType):
    """Just the pycuda.driver surface vggedge uses; device memory is a dict of bytearrays."""

    class Error(Exception):
        pass

    class MemoryError(Error):  # noqa: A001 - mirrors pycuda's name
        pass

    def __init__(self) -> None:
        super().__init__("pycuda.driver")
        self.memory: dict[int, bytearray] = {}
        self.freed: list[int] = []
        self._next = itertools.count(0x10000, 0x10000)
        self.waits = 0
        self.contexts_pushed = 0
        self.current = None
        self.retains = 0
        self.detached = False
        self.stream_flags: list[int] = []
        self.log: list[str] = []  # order of synchronise / free / session-drop calls
        driver = self

        class Context:
            def push(self) -> None:
                driver.contexts_pushed += 1
                driver.current = self

            @staticmethod
            def pop() -> None:
                assert driver.contexts_pushed > 0, "pop() without a push"
                driver.contexts_pushed -= 1

            @staticmethod
            def get_current():
                return driver.current if driver.contexts_pushed else None

            @staticmethod
            def synchronize() -> None:
                assert driver.contexts_pushed > 0, "Context.synchronize() with no context pushed"
                driver.log.append("synchronize")

            def detach(self) -> None:
                driver.detached = True

        class Device:
            def __init__(self, index: int) -> None:
                self.index = index

            @staticmethod
            def count() -> int:
                return 1

            def retain_primary_context(self) -> Context:
                driver.retains += 1
                return Context()

        class Stream:
            handles = itertools.count(1)

            def __init__(self, flags: int = 0) -> None:
                self.handle = next(Stream.handles)
                driver.stream_flags.append(flags)

            def synchronize(self) -> None:
                pass

            def is_done(self) -> bool:
                return True

            def wait_for_event(self, event) -> None:
                driver.waits += 1

        class Event:
            clock = itertools.count()

            def record(self, stream=None):
                self.t = next(Event.clock)
                return self

            def synchronize(self):
                return self

            def time_since(self, start) -> float:
                return float(self.t - start.t)

        self.Context, self.Device, self.Stream, self.Event = Context, Device, Stream, Event

    def init(self) -> None:
        pass

    def pagelocked_empty(self, shape, dtype):
        dtype = np.dtype(dtype)
        return np.ndarray(shape, dtype, buffer=Pinned(int(np.prod(shape)) * dtype.itemsize))

    def mem_alloc(self, nbytes: int):
        address = next(self._next)
        self.memory[address] = bytearray(nbytes)
        return Alloc(self, address)

    def view(self, ptr: int, dtype, shape) -> np.ndarray:
        """The fake device memory at ``ptr`` as an array (what a kernel would see)."""
        base = max(a for a in self.memory if a <= ptr)
        count = int(np.prod(shape))
        return np.frombuffer(self.memory[base], dtype, count, ptr - base).reshape(shape)

    def memcpy_htod_async(self, dest: int, src: np.ndarray, stream=None) -> None:
        base = max(a for a in self.memory if a <= dest)
        self.memory[base][dest - base:dest - base + src.nbytes] = src.tobytes()

    def memcpy_dtoh_async(self, dest: np.ndarray, src: int, stream=None) -> None:
        dest.reshape(-1).view(np.uint8)[:] = np.frombuffer(bytes(self.view(src, np.uint8, (dest.nbytes,))), np.uint8)


class Alloc:
    def __init__(self, driver: FakeDriver, address: int) -> None:
        self.driver, self.address = driver, address

    def __int__(self) -> int:
        return self.address

    def free(self) -> None:
        self.driver.freed.append(self.address)
        self.driver.log.append("free")


def double_plus_one(driver: FakeDriver, inputs: list[TensorSpec], outputs: list[TensorSpec]):
    """An execute callable: out[b, j] = 2 * in[b].sum() + j, on the fake device buffers."""

    def execute(slot, n: int) -> None:
        x = driver.view(slot.device[inputs[0].name].ptr, inputs[0].dtype, (n, *inputs[0].shape[1:]))
        y = driver.view(slot.device[outputs[0].name].ptr, outputs[0].dtype, (n, *outputs[0].shape[1:]))
        y[...] = 2 * x.reshape(n, -1).sum(axis=1, keepdims=True) + np.arange(y.shape[1])

    return execute


def reference(batch: np.ndarray, width: int = 5) -> np.ndarray:
    return 2 * batch.reshape(len(batch), -1).sum(axis=1, keepdims=True) + np.arange(width, dtype=np.float32)


IN = [TensorSpec("images", (4, 3, 2, 2), np.dtype(np.float32))]
OUT = [TensorSpec("scores", (4, 5), np.dtype(np.float32))]


def batches(sizes=(1, 4, 2, 3, 4, 1)) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.standard_normal((n, 3, 2, 2)).astype(np.float32) for n in sizes]


class TrtType:
    def __init__(self, name: str) -> None:
        self.name = name


def fake_tensorrt(version: str, driver: FakeDriver, io_dtype: str = "FLOAT",
                  profile: tuple[int, int, int] = (1, 2, 4)) -> types.ModuleType:
    """A tensorrt module whose engine computes ``reference`` on the fake device memory (profile 0: ``profile``)."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.TensorIOMode = SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")
    np_dtype = np.float32 if io_dtype == "FLOAT" else np.float16

    class Context:
        def __init__(self) -> None:
            self.shapes: dict[str, tuple] = {}
            self.addresses: dict[str, int] = {}
            self.shape_calls = 0

        def set_input_shape(self, name: str, shape) -> bool:
            self.shape_calls += 1
            self.shapes[name] = tuple(shape)
            return profile[0] <= shape[0] <= profile[2]

        def get_tensor_shape(self, name: str):
            n = self.shapes["images"][0]
            return (n, 3, 2, 2) if name == "images" else (n, 5)

        def set_tensor_address(self, name: str, ptr: int) -> bool:
            self.addresses[name] = ptr
            return True

        def execute_async_v3(self, stream_handle: int) -> bool:
            n = self.shapes["images"][0]
            x = driver.view(self.addresses["images"], np_dtype, (n, 3, 2, 2)).astype(np.float32)
            y = driver.view(self.addresses["scores"], np_dtype, (n, 5))
            y[...] = reference(x)
            return True

    class Engine:
        num_io_tensors = 2
        contexts: list = []

        def get_tensor_name(self, i: int) -> str:
            return ("images", "scores")[i]

        def get_tensor_mode(self, name: str) -> str:
            return "INPUT" if name == "images" else "OUTPUT"

        def get_tensor_dtype(self, name: str) -> TrtType:
            return TrtType(io_dtype)

        def get_tensor_shape(self, name: str):
            return (-1, 3, 2, 2) if name == "images" else (-1, 5)

        def get_tensor_profile_shape(self, name: str, index: int):
            assert index == 0
            return [(b, 3, 2, 2) for b in profile]

        def create_execution_context(self) -> Context:
            self.contexts.append(Context())
            return self.contexts[-1]

    trt.engine = Engine()
    return trt




def fake_onnxruntime(driver: FakeDriver, *, takes_stream: bool = True, knows_stream: bool = True,
                     batch: object = "N") -> types.ModuleType:
    """An onnxruntime-gpu whose session computes ``reference`` on the fake device memory bound to it.

    ``takes_stream=False`` mimics a build that ignores ``user_compute_stream``, ``knows_stream=False``
    one that rejects it (before 1.17/1.18);
    ``batch`` is the ONNX's batch dimension (a name for dynamic, an int for fixed).
    Dropping a session appends "session dropped" to ``driver.log``.
    """
    ort = types.ModuleType("onnxruntime")
    ort.__version__ = "1.99.0"
    ort.get_available_providers = lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    ort.GraphOptimizationLevel = SimpleNamespace(ORT_DISABLE_ALL=0, ORT_ENABLE_BASIC=1, ORT_ENABLE_EXTENDED=2,
                                                 ORT_ENABLE_ALL=99)
    ort.ExecutionMode = SimpleNamespace(ORT_SEQUENTIAL=0, ORT_PARALLEL=1)
    ort.sessions = []
    ort.preloaded_env = []  # the cuDNN log variables as they were when preload_dlls() loaded cuDNN

    def preload_dlls() -> None:
        ort.preloaded_env.append({key: os.environ.get(key) for key in ("CUDNN_LOGLEVEL_DBG", "CUDNN_FRONTEND_LOG_INFO")})

    ort.preload_dlls = preload_dlls

    class SessionOptions:
        def add_session_config_entry(self, key: str, value: str) -> None:
            pass

    class RunOptions:
        def add_run_config_entry(self, key: str, value: str) -> None:
            self.entry = (key, value)
            self.entries = {**getattr(self, "entries", {}), key: value}

    class IOBinding:
        def __init__(self) -> None:
            self.bound: dict[str, tuple] = {}

        def bind_input(self, name, device, device_id, dtype, shape, ptr) -> None:
            self.bound[name] = (tuple(shape), ptr)

        bind_output = bind_input

    class InferenceSession:
        def __init__(self, source, sess_options=None, providers=()) -> None:
            self.cuda_options = dict(providers[0][1])
            self.sess_options, self.bound_shapes = sess_options, []
            if not knows_stream and "user_compute_stream" in self.cuda_options:
                raise RuntimeError('provider_options_utils.h:146 Parse Unknown provider option: "user_compute_stream".')
            ort.sessions.append(weakref.ref(self))
            weakref.finalize(self, driver.log.append, "session dropped")

        def get_providers(self) -> list[str]:
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]

        def get_provider_options(self) -> dict:
            given = self.cuda_options.get("user_compute_stream", "0") if takes_stream else "0"
            return {"CUDAExecutionProvider": {"device_id": "0", "has_user_compute_stream": str(int(given != "0")),
                                              "user_compute_stream": given}}

        def get_inputs(self):
            return [SimpleNamespace(name="images", shape=[batch, 3, 2, 2], type="tensor(float)")]

        def get_outputs(self):
            return [SimpleNamespace(name="scores", shape=[batch, 5], type="tensor(float)")]

        def io_binding(self) -> IOBinding:
            return IOBinding()

        def run_with_iobinding(self, binding: IOBinding, run_options=None) -> None:
            shape, x_ptr = binding.bound["images"]
            y_shape, y_ptr = binding.bound["scores"]
            self.bound_shapes.append(shape)
            x = driver.view(x_ptr, np.float32, shape)
            driver.view(y_ptr, np.float32, y_shape)[...] = reference(x)

    ort.SessionOptions, ort.RunOptions, ort.InferenceSession = SessionOptions, RunOptions, InferenceSession
    return ort


def fake_nvimgcodec(driver: FakeDriver | None = None, *, refuse=lambda data: False, drop_failures: bool = False,
                    pad: int = 32) -> types.ModuleType:
    """An ``nvidia.nvimgcodec`` that decodes with OpenCV into fake device memory (RGB, rows padded by ``pad``).

    ``refuse(data)`` makes it return None for an image (as for a file its backends reject);
    ``drop_failures=True`` mimics releases that leave failures out of the returned list.
    ``module.calls`` records (number of images, cuda_stream) per decode call.
    """
    import cv2

    mod = types.ModuleType("nvidia.nvimgcodec")
    mod.calls = []

    class DecodeParams:
        def __init__(self, apply_exif_orientation: bool = True, color_spec=None, allow_any_depth: bool = False):
            self.apply_exif_orientation = apply_exif_orientation

    class Image:
        def __init__(self, rgb: np.ndarray) -> None:
            h, w, _ = rgb.shape
            self.pitch = w * 3 + pad
            padded = np.zeros((h, self.pitch), np.uint8)
            padded[:, :w * 3] = rgb.reshape(h, w * 3)
            if driver is not None:
                self.alloc = driver.mem_alloc(padded.nbytes)
                driver.memcpy_htod_async(int(self.alloc), padded)
                ptr = int(self.alloc)
            else:
                self.host, ptr = padded, padded.ctypes.data
            self.__cuda_array_interface__ = {"shape": (h, w, 3), "typestr": "|u1", "strides": (self.pitch, 3, 1),
                                             "data": (ptr, False), "version": 3}

    class Decoder:
        def __init__(self, device_id: int = 0, **kwargs) -> None:
            self.device_id = device_id

        def _one(self, data: bytes, params: DecodeParams):
            if refuse(data):
                return None
            flags = cv2.IMREAD_COLOR | (0 if params.apply_exif_orientation else cv2.IMREAD_IGNORE_ORIENTATION)
            bgr = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
            return None if bgr is None else Image(bgr[:, :, ::-1])

        def decode(self, src, params=None, cuda_stream: int = 0):
            params = params or DecodeParams()
            if isinstance(src, (bytes, bytearray)):
                mod.calls.append((1, cuda_stream))
                return self._one(bytes(src), params)
            mod.calls.append((len(src), cuda_stream))
            images = [self._one(bytes(data), params) for data in src]
            return [i for i in images if i is not None] if drop_failures else images

    mod.DecodeParams, mod.Decoder, mod.Image = DecodeParams, Decoder, Image
    return mod


def fake_kernel(driver: FakeDriver, spec) -> SimpleNamespace:
    """The preprocessing kernel as its numpy twin (``gpu_preprocess.reference``) on the fake device memory."""
    from vggedge.runtime.gpu.gpu_preprocess import reference

    other = {"RGB": "BGR", "BGR": "RGB"}

    def launch(grid, block, stream, src, h, w, pitch, dst, H, W, sy, sx, oy, ox, swap, nhwc, *affine) -> None:
        frame = driver.view(src, np.uint8, (h, pitch))[:, :w * 3].reshape(h, w, 3).copy()
        order = spec.preprocessing.channel_order
        out = reference(frame, spec, other[order] if swap else order)
        driver.view(dst, out.dtype, out.shape)[...] = out

    return SimpleNamespace(prepared_async_call=launch)
