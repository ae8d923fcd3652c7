"""GPU checks: the preprocessing kernel vs OpenCV, ort-cuda vs ort-cpu, overlapped vs synchronous pipeline.

Every test needs pycuda and an NVIDIA GPU and skips cleanly without them (the
``cuda`` fixture); the onnxruntime ones also need onnxruntime-gpu, the kernel
one a built fatbin (built here with cmake when nvcc is present).
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest

from vggedge.model.vgg16 import VGG16Options, build_onnx, random_weights
from vggedge.preprocess import prepare
from vggedge.runtime.base import RunnerOptions
from vggedge.runtime.gpu import cuda as vcuda
from vggedge.spec import CAFFE_RGB, RAW_PIXELS, TORCHVISION, ModelSpec, Preprocessing

pytestmark = pytest.mark.gpu
ROOT = Path(__file__).resolve().parents[3]
OPTS = VGG16Options(include_rescaling=False, include_top=True, num_classes=10, input_shape=(32, 32, 3),
                    classifier_activation=None)
FP32_REL = 1e-3


@pytest.fixture(scope="module")
def cuda() -> vcuda.CudaContext:
    reason = vcuda.cuda_available()
    if reason is not None:
        pytest.skip(f"no CUDA here: {reason}")
    ctx = vcuda.CudaContext(0).open()
    yield ctx
    ctx.release()


@pytest.fixture(scope="module")
def fatbin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vggedge.runtime.gpu.gpu_preprocess import default_fatbin

    path = default_fatbin()
    if path.is_file():
        return path
    if shutil.which("nvcc") is None or shutil.which("cmake") is None:
        pytest.skip(f"{path} not built and nvcc/cmake are missing")
    build = tmp_path_factory.mktemp("kernels")
    subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build)], check=True, capture_output=True)
    subprocess.run(["cmake", "--build", str(build)], check=True, capture_output=True)
    return build / "kernels" / "preprocess.fatbin"


@pytest.fixture(scope="module")
def small_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gpu") / "vgg16_small.onnx"
    onnx.save(build_onnx(random_weights(OPTS), OPTS), path)
    return path


def ort_cuda_or_skip() -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu (CUDAExecutionProvider) is not installed")


def frames() -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    smooth = np.clip(np.add.outer(np.arange(300), np.arange(400))[..., None] * [0.3, 0.5, 0.7], 0, 255)
    return [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8),  # downscale
            rng.integers(0, 256, (100, 150, 3), dtype=np.uint8),  # upscale
            rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),  # same size: no resize
            rng.integers(0, 256, (333, 517, 3), dtype=np.uint8),  # odd sizes
            smooth.astype(np.uint8)]


def gpu_preprocess(ctx: vcuda.CudaContext, spec: ModelSpec, fatbin: Path, frame: np.ndarray,
                   device_ptr_path: bool) -> np.ndarray:
    """Image 1 of a batch of 2; the device path feeds an RGB frame with padded rows (as nvImageCodec may)."""
    from vggedge.runtime.gpu.gpu_preprocess import GpuPreprocessor

    dtype = np.dtype(spec.dtype)
    with ctx, GpuPreprocessor(spec, fatbin=fatbin, ctx=ctx) as pre, vcuda.CudaStream() as stream, \
            vcuda.DeviceBuffer(pre.image_bytes * 2) as out, vcuda.PinnedBuffer((2, *spec.input_shape[1:]), dtype) as host:
        if device_ptr_path:
            h, w = frame.shape[:2]
            pitch = w * 3 + 64  # padded rows
            padded = np.zeros((h, pitch), np.uint8)
            padded[:, :w * 3] = frame[:, :, ::-1].reshape(h, w * 3)  # RGB, as nvImageCodec decodes
            with vcuda.PinnedBuffer(padded.shape, np.uint8) as pinned, vcuda.DeviceBuffer(padded.nbytes) as src:
                pinned.array[...] = padded
                src.upload_async(pinned.array, stream)
                pre(src.ptr, out.ptr, stream, batch_index=1, frame_shape=(h, w), pitch=pitch, source_order="RGB")
                stream.synchronize()
        else:
            pre(frame, out.ptr, stream, batch_index=1)
        out.download_async(host.array, stream)
        stream.synchronize()
        return host.array[1].astype(np.float32)


def pixels(tensor: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Undo ``x * gain - offset`` (per channel, model order): back to pixel units, HWC."""
    pre = spec.preprocessing
    std = np.asarray(pre.std, np.float32)
    gain, offset = pre.scale / std, np.asarray(pre.mean, np.float32) / std
    hwc = tensor if spec.layout == "NHWC" else tensor.transpose(1, 2, 0)
    return (hwc + offset) / gain


@pytest.mark.parametrize("preprocessing, dtype, layout, tol", [
    (RAW_PIXELS, "float32", "NCHW", 1.0), (CAFFE_RGB, "float32", "NCHW", 1.0),
    (Preprocessing("BGR", 1 / 255, (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)), "float16", "NCHW", 1.25),
    (TORCHVISION, "float32", "NCHW", 1.0), (TORCHVISION, "float16", "NHWC", 1.25)])
@pytest.mark.parametrize("device_ptr_path", [False, True])
def test_kernel_matches_opencv(cuda, fatbin, preprocessing, dtype, layout, tol, device_ptr_path) -> None:
    from vggedge.runtime.gpu.gpu_preprocess import PIXEL_TOLERANCE, reference

    assert PIXEL_TOLERANCE == 1.0
    spec = ModelSpec(preprocessing=preprocessing, dtype=dtype, layout=layout)
    for frame in frames():
        want = prepare(frame, spec).astype(np.float32)
        got = gpu_preprocess(cuda, spec, fatbin, frame, device_ptr_path)
        diff = np.abs(pixels(got, spec) - pixels(want, spec))
        assert diff.max() <= tol, f"frame {frame.shape}: max pixel difference {diff.max():.3f} > {tol}"
        assert diff.mean() < 0.5
        twin = np.abs(pixels(got, spec) - pixels(reference(frame, spec).astype(np.float32), spec))
        assert twin.max() <= (0.05 if dtype == "float32" else 0.25), f"kernel and its numpy twin differ by {twin.max():.3f} px"  # same arithmetic


def test_ort_cuda_matches_ort_cpu(cuda, small_onnx) -> None:
    ort_cuda_or_skip()
    from vggedge.runtime.ort import OrtRunner
    from vggedge.runtime.gpu.ort_cuda import OrtCudaRunner

    x = np.random.default_rng(2).standard_normal((3, 3, 32, 32)).astype(np.float32) * 50
    with OrtRunner(small_onnx) as cpu:
        want = cpu.infer({"images": x})["predictions"]
    with OrtCudaRunner(small_onnx, RunnerOptions(max_batch=4), provider_options={"use_tf32": "0"}) as gpu:
        assert gpu.providers()[0] == "CUDAExecutionProvider"
        cuda_options = gpu.session.get_provider_options()["CUDAExecutionProvider"]
        assert cuda_options["has_user_compute_stream"] == "1"
        assert cuda_options["user_compute_stream"] == str(gpu._compute.handle)  # onnxruntime runs on our stream
        got = gpu.infer({"images": x})["predictions"]
        assert gpu.last_times["compute"] > 0
    rel = np.abs(got - want).max() / np.abs(want).max()
    assert rel <= FP32_REL, f"ort-cuda vs ort-cpu relative error {rel:.2e}"


def test_overlapped_run_equals_blocking_infer(cuda, small_onnx) -> None:
    ort_cuda_or_skip()
    from vggedge.runtime.gpu.ort_cuda import OrtCudaRunner

    rng = np.random.default_rng(3)
    batches = [rng.standard_normal((n, 3, 32, 32)).astype(np.float32) for n in (4, 1, 3, 4, 2, 4, 4, 1)]
    options = RunnerOptions(max_batch=4, slots=3)
    with OrtCudaRunner(small_onnx, options, provider_options={"use_tf32": "0"}) as runner:
        overlapped = list(runner.run(batches))
        singles = [runner.infer({"images": b})["predictions"] for b in batches]
    with OrtCudaRunner(small_onnx, RunnerOptions(max_batch=4, slots=1), provider_options={"use_tf32": "0"}) as one:
        one_slot = list(one.run(batches))
    assert [r.tag is b for r, b in zip(overlapped, batches)] == [True] * len(batches)
    for a, b, c in zip(overlapped, one_slot, singles):
        np.testing.assert_allclose(a.outputs["predictions"], b.outputs["predictions"], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(a.outputs["predictions"], c, rtol=1e-5, atol=1e-5)


def test_no_context_is_left_current_after_deactivate(cuda, small_onnx) -> None:
    ort_cuda_or_skip()
    from vggedge.runtime.gpu.ort_cuda import OrtCudaRunner

    assert vcuda.current_context() is None
    for _ in range(2):  # a second activation reuses the one retained primary context
        with OrtCudaRunner(small_onnx, RunnerOptions(max_batch=2)) as runner:
            runner.infer({"images": np.zeros((2, 3, 32, 32), np.float32)})
        assert vcuda.current_context() is None
