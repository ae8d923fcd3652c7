"""GpuPreprocessor's buffers over the fake pycuda of ``gpu_fakes`` (the kernel itself is checked on a GPU)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from gpu_fakes import FakeDriver

from vggedge.runtime.gpu import cuda as vcuda
from vggedge.runtime.gpu.gpu_preprocess import GpuPreprocessor
from vggedge.spec import ModelSpec


def test_each_stream_stages_frames_in_its_own_buffer_and_free_synchronises(fake_cuda: FakeDriver) -> None:
    pre = GpuPreprocessor(ModelSpec(), ctx=vcuda.CudaContext(0).open())
    launches: list[tuple[int, int]] = []
    pre._kernel = SimpleNamespace(prepared_async_call=lambda grid, block, stream, src, *rest:
                                  launches.append((stream.handle, src)))
    frame = np.zeros((8, 8, 3), np.uint8)
    a, b = vcuda.CudaStream(), vcuda.CudaStream()
    pre(frame, 0x1000, a)
    pre(frame, 0x1000, b)
    pre(frame, 0x1000, a)
    assert launches[0][1] != launches[1][1]  # another stream's copy cannot overwrite a frame still being read
    assert launches[0][1] == launches[2][1]  # one stream reuses its own buffer (stream order protects it)
    pre(np.zeros((16, 16, 3), np.uint8), 0x1000, a)  # growing a's buffer leaves b's alone
    assert fake_cuda.freed == [launches[0][1]]
    fake_cuda.log.clear()
    pre.free()
    assert fake_cuda.log == ["synchronize", "free", "free"]  # with the context pushed (the fake checks)
    assert fake_cuda.contexts_pushed == 0
    pre.free()  # safe twice


# ---------------------------------------------------------------- the kernel's arithmetic, checked on CPUs
import pytest  # noqa: E402

from vggedge.errors import ConfigError, ImageError  # noqa: E402
from vggedge.preprocess import prepare, resize_for  # noqa: E402
from vggedge.runtime.gpu.gpu_preprocess import PIXEL_TOLERANCE, geometry, reference  # noqa: E402
from vggedge.spec import CAFFE_RGB, TORCHVISION, RAW_PIXELS, Preprocessing  # noqa: E402


def _frames() -> list[np.ndarray]:
    rng = np.random.default_rng(4)
    smooth = np.clip(np.add.outer(np.arange(300), np.arange(400))[..., None] * [0.3, 0.5, 0.7], 0, 255)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for shape in ((480, 640, 3), (100, 150, 3), (224, 224, 3),
                                                                      (333, 517, 3), (517, 333, 3))] + \
        [smooth.astype(np.uint8)]


def _pixels(tensor: np.ndarray, spec: ModelSpec) -> np.ndarray:
    pre = spec.preprocessing
    std = np.asarray(pre.std, np.float32)
    gain, offset = pre.scale / std, np.asarray(pre.mean, np.float32) / std
    hwc = tensor.astype(np.float32) if spec.layout == "NHWC" else tensor.astype(np.float32).transpose(1, 2, 0)
    return (hwc + offset) / gain


SPECS = [ModelSpec(preprocessing=RAW_PIXELS), ModelSpec(preprocessing=CAFFE_RGB, dtype="float16"),
         ModelSpec(preprocessing=TORCHVISION),
         ModelSpec(preprocessing=Preprocessing("BGR", 1 / 255, (0.4, 0.5, 0.6), (0.2, 0.25, 0.3),
                                               resize="shorter_crop", resize_shorter=240), layout="NHWC")]


@pytest.mark.parametrize("spec", SPECS, ids=["raw-direct", "caffe-fp16", "imagenet-crop", "bgr-crop-nhwc"])
@pytest.mark.parametrize("source_order", ["BGR", "RGB"])
def test_kernel_arithmetic_matches_opencv_for_every_policy_layout_and_order(spec: ModelSpec,
                                                                            source_order: str) -> None:
    """The numpy twin of the kernel (same geometry, taps, swap, layout) against the one OpenCV path."""
    tol = PIXEL_TOLERANCE + (0.25 if spec.dtype == "float16" else 0.0)
    for frame in _frames():
        want = prepare(frame, spec)  # OpenCV reads BGR frames
        source = frame[:, :, ::-1].copy() if source_order == "RGB" else frame  # nvImageCodec gives RGB
        got = reference(source, spec, source_order)
        assert got.shape == want.shape and got.dtype == want.dtype
        diff = np.abs(_pixels(got, spec) - _pixels(want, spec))
        assert diff.max() <= tol, f"{frame.shape} {source_order}: max pixel difference {diff.max():.3f}"
        assert diff.mean() < 0.5


def test_geometry_is_resize_for_s_crop() -> None:
    spec = ModelSpec(preprocessing=TORCHVISION)  # shorter side 256, centre crop 224
    sy, sx, oy, ox = geometry(spec, 480, 640)
    assert (sy, sx) == pytest.approx((480 / 256, 640 / 341)) and (oy, ox) == (16.0, 58.0)
    assert resize_for(np.zeros((480, 640, 3), np.uint8), spec).shape[:2] == (224, 224)
    assert geometry(ModelSpec(), 448, 224) == (2.0, 1.0, 0.0, 0.0)


def test_refuses_what_the_kernel_cannot_do() -> None:
    with pytest.raises(ConfigError, match="bilinearly.*'area'"):
        GpuPreprocessor(ModelSpec(preprocessing=Preprocessing(interpolation="area")))
    with pytest.raises(ConfigError, match="resizes 'direct' or 'shorter_crop'"):
        GpuPreprocessor(SimpleNamespace(preprocessing=SimpleNamespace(interpolation="linear", resize="pad")))


def test_device_frames_pass_pitch_and_channel_order_to_the_kernel(fake_cuda: FakeDriver) -> None:
    spec = ModelSpec(preprocessing=TORCHVISION, layout="NHWC", dtype="float16")
    pre = GpuPreprocessor(spec, ctx=vcuda.CudaContext(0).open())
    calls: list[tuple] = []
    pre._kernel = SimpleNamespace(prepared_async_call=lambda grid, block, stream, *args: calls.append(args))
    stream = vcuda.CudaStream()
    pre(0x5000, 0x9000, stream, batch_index=2, frame_shape=(480, 640), pitch=2048, source_order="RGB")
    src, h, w, pitch, dst, H, W, sy, sx, oy, ox, swap, nhwc = calls[0][:13]
    assert (src, h, w, pitch, H, W) == (0x5000, 480, 640, 2048, 224, 224)
    assert dst == 0x9000 + 2 * 224 * 224 * 3 * 2  # image 2 of a half-precision batch, no host round trip
    assert (oy, ox) == (16.0, 58.0) and swap == 0 and nhwc == 1  # RGB source, RGB model: no swap
    pre(0x5000, 0x9000, stream, frame_shape=(480, 640), source_order="BGR")
    assert calls[1][11] == 1
    with pytest.raises(ImageError, match="pitch 100 is below"):
        pre(0x5000, 0x9000, stream, frame_shape=(480, 640), pitch=100)
    pre.free()
