"""GPU decoding (nvImageCodec) over a fake module: what goes to the GPU, the CPU fallback, errors per file,
and the whole device path (decode -> kernel -> runner) over the fake pycuda and onnxruntime-gpu."""
from __future__ import annotations

import logging
import os
import sys
import threading
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
from gpu_fakes import FakeDriver, fake_kernel, fake_nvimgcodec, reference

from vggedge.apps.batches import ImageBatch, image_batches
from vggedge.errors import BackendUnavailable, ConfigError, ImageError
from vggedge.runtime.base import RunnerOptions
from vggedge.runtime.gpu import decode as gdecode
from vggedge.runtime.gpu.decode import GpuDecoder, gpu_reason, jpeg_frame, select_decoder
from vggedge.runtime.gpu.device_prepare import DeviceImageFill
from vggedge.runtime.gpu.gpu_preprocess import reference as kernel_twin
from vggedge.runtime.gpu.ort_cuda import OrtCudaRunner
from vggedge.spec import RAW_PIXELS, ModelSpec

REPO = Path(__file__).resolve().parents[3]
PHOTO = REPO / "calib" / "coffee.jpg"


@pytest.fixture(autouse=True)
def kernels_built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in fatbin, so the GPU path counts as available (the fake kernel runs instead of it)."""
    fatbin = tmp_path / "preprocess.fatbin"
    fatbin.write_bytes(b"fake")
    monkeypatch.setenv("VGGEDGE_KERNELS_FATBIN", str(fatbin))
    return fatbin


def encoded(kind: str, seed: int = 0) -> bytes:
    """Small real files: baseline/progressive JPEG, PNG, CMYK-marked JPEG, corrupt JPEG."""
    rng = np.random.default_rng(seed)
    image = cv2.resize(cv2.imread(str(PHOTO)), (40, 30)) if seed == 0 else \
        rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    if kind == "png":
        return cv2.imencode(".png", image)[1].tobytes()
    params = [cv2.IMWRITE_JPEG_PROGRESSIVE, 1] if kind == "progressive" else []
    data = bytearray(cv2.imencode(".jpg", image, params)[1].tobytes())
    if kind == "cmyk":  # patch the frame header's component count: a 4-component (CMYK) JPEG to a parser
        marker = jpeg_frame(bytes(data)).marker
        at = bytes(data).index(bytes([0xFF, marker]))
        data[at + 9] = 4
    if kind == "corrupt":
        return bytes(data[:len(data) // 3]) + b"\x00" * 50 + b"\xff\xd9"
    return bytes(data)


def test_gpu_reason_sorts_what_the_gpu_decoder_takes() -> None:
    assert gpu_reason(encoded("jpeg")) is None
    assert jpeg_frame(encoded("jpeg")).components == 3
    assert gpu_reason(encoded("progressive")) is None
    assert gpu_reason(encoded("progressive"), progressive=False) == "progressive JPEG"
    assert gpu_reason(encoded("png")) == "not a JPEG"
    assert gpu_reason(encoded("cmyk")) == "4-component JPEG (CMYK/YCCK)"
    assert gpu_reason(b"\xff\xd8\xff\xda\x00\x02") == "JPEG without a readable frame header"
    assert gpu_reason(b"") == "not a JPEG"


def rgb_of(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]


@pytest.mark.parametrize("drop_failures", [False, True])
def test_decode_partitions_falls_back_per_file_and_keeps_order(drop_failures: bool) -> None:
    bad = encoded("jpeg", seed=1)
    module = fake_nvimgcodec(refuse=lambda data: data == bad, drop_failures=drop_failures)
    decoder = GpuDecoder(module=module)
    items = [encoded("jpeg"), encoded("png"), bad, encoded("corrupt"), encoded("progressive"), b""]
    names = ["a.jpg", "b.png", "c.jpg", "d.jpg", "e.jpg", "f.jpg"]
    out = decoder.decode(items, names, stream=77)
    assert [d.on_device for d in out] == [True, False, False, False, True, False]
    assert module.calls[0] == (4, 77)  # one batch of the four JPEGs, on our stream (then one by one if dropped)
    a = out[0]
    got = np.frombuffer(a.keep.host.tobytes(), np.uint8).reshape(a.height, a.pitch)[:, :a.width * 3]
    np.testing.assert_array_equal(got.reshape(a.height, a.width, 3), rgb_of(items[0]))
    assert a.pitch == a.width * 3 + 32  # padded rows reported, not assumed
    assert out[1].why_cpu == "not a JPEG" and out[1].host.shape == (30, 40, 3)  # PNG: decoded on the CPU (BGR)
    assert out[2].why_cpu == "nvImageCodec could not decode it" and out[2].host is not None  # GPU refused: CPU
    assert isinstance(out[3].error, ImageError) and "d.jpg" in str(out[3].error)  # nobody decodes it: its error
    assert isinstance(out[5].error, ImageError) and "f.jpg: image file is empty" in str(out[5].error)
    assert decoder.counts == {"gpu": 2, "cpu": 2, "failed": 2}


def test_cpu_fallbacks_decode_on_the_pool_at_once_and_beside_the_gpu_batch() -> None:
    """PNGs among GPU JPEGs (and every image when the decoder cannot start) are decoded on the shared decode
    pool, several at a time and while nvImageCodec decodes its batch; results stay in order."""
    from vggedge import decode_pool

    pool = decode_pool.DecodePool(3)
    meet = threading.Barrier(3, timeout=20)  # two CPU decodes and the GPU batch, all running at once
    threads: list[str] = []

    def cpu_decode(data: bytes, name: str) -> np.ndarray:
        threads.append(threading.current_thread().name)
        meet.wait()  # a serial fallback never gets here twice: BrokenBarrierError
        return gdecode._cpu_decode(data, name)

    module = fake_nvimgcodec()
    real = module.Decoder.decode

    def gpu_decode(self, src, params=None, cuda_stream=0):
        meet.wait()
        return real(self, src, params, cuda_stream)

    module.Decoder.decode = gpu_decode
    decoder = GpuDecoder(module=module, cpu_decode=cpu_decode, pool=pool)
    items = [encoded("png", 1), encoded("jpeg"), encoded("png", 2)]
    with pool:
        out = decoder.decode(items, ["a.png", "b.jpg", "c.png"])
    assert [d.on_device for d in out] == [False, True, False]
    np.testing.assert_array_equal(out[0].host, cv2.imdecode(np.frombuffer(items[0], np.uint8), cv2.IMREAD_COLOR))
    np.testing.assert_array_equal(out[2].host, cv2.imdecode(np.frombuffer(items[2], np.uint8), cv2.IMREAD_COLOR))
    assert len(threads) == 2 and all(t.startswith(decode_pool.THREAD_PREFIX) for t in threads), threads
    assert decoder.counts == {"gpu": 1, "cpu": 2, "failed": 0}

    # a decoder that cannot start (auto): every image goes to the pool, still two at a time
    def cannot_start(**kwargs):
        raise RuntimeError("CUDA Runtime failure: '#35'")

    broken = fake_nvimgcodec()
    broken.Decoder = cannot_start
    meet, threads[:] = threading.Barrier(2, timeout=20), []
    with decode_pool.DecodePool(2) as two:
        fallback = GpuDecoder(module=broken, cpu_decode=cpu_decode, fallback=True, pool=two)
        out = fallback.decode([encoded("jpeg"), encoded("jpeg", 2)], ["a.jpg", "b.jpg"])
    assert all(d.host is not None for d in out) and fallback.unavailable and len(threads) == 2
    assert fallback.counts == {"gpu": 0, "cpu": 2, "failed": 0}

    # by default: the shared pool over every core
    meet, threads[:] = threading.Barrier(1), []
    GpuDecoder(module=module, cpu_decode=cpu_decode).decode([encoded("png")], ["d.png"])
    inline = decode_pool.shared_pool().workers == 1
    assert threads[0].startswith(decode_pool.THREAD_PREFIX) or inline, threads


def test_a_whole_batch_failure_costs_only_the_bad_files() -> None:
    module = fake_nvimgcodec()
    real = module.Decoder.decode

    def flaky(self, src, params=None, cuda_stream=0):
        if isinstance(src, list):
            raise RuntimeError("nvImageCodec: batch failed")
        return real(self, src, params, cuda_stream)

    module.Decoder.decode = flaky
    out = GpuDecoder(module=module).decode([encoded("jpeg"), encoded("jpeg", 2)], ["a", "b"])
    assert all(d.on_device for d in out)


def test_import_is_lazy_quiet_and_explains_its_absence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYNVIMGCODEC_VERBOSITY", raising=False)
    monkeypatch.setattr(gdecode, "MODULE", "vggedge_no_such_module.nvimgcodec")
    with pytest.raises(BackendUnavailable, match="nvImageCodec cannot be imported.*nvidia-nvimgcodec-cu13"):
        gdecode.import_nvimgcodec()
    assert os.environ["PYNVIMGCODEC_VERBOSITY"] == "0"  # its log is off unless vggedge logs at DEBUG
    assert "not installed" in gdecode.nvimgcodec_reason()
    monkeypatch.delenv("PYNVIMGCODEC_VERBOSITY")
    logging.getLogger("vggedge.runtime.gpu.decode").setLevel(logging.DEBUG)
    try:
        with pytest.raises(BackendUnavailable):
            gdecode.import_nvimgcodec()
        assert os.environ["PYNVIMGCODEC_VERBOSITY"] == "2"
    finally:
        logging.getLogger("vggedge.runtime.gpu.decode").setLevel(logging.NOTSET)
    assert "nvidia.nvimgcodec" not in sys.modules or isinstance(sys.modules["nvidia.nvimgcodec"], types.ModuleType)


def test_select_decoder_is_the_one_choice(monkeypatch: pytest.MonkeyPatch, kernels_built: Path) -> None:
    monkeypatch.delenv("VGGEDGE_DECODER", raising=False)
    gpu_runner = OrtCudaRunner(b"onnx")
    have = lambda: None  # noqa: E731
    assert select_decoder("auto", runner=gpu_runner, spec=ModelSpec(), available=have).kind == "gpu"
    assert select_decoder("cpu", runner=gpu_runner, available=have).kind == "cpu"
    missing = select_decoder("auto", runner=gpu_runner, available=lambda: "nvImageCodec is not installed (x)")
    assert missing.kind == "cpu" and "not installed" in missing.reason
    cpu_runner = types.SimpleNamespace(name="ort-cpu")
    assert "runs on the CPU" in select_decoder("auto", runner=cpu_runner, available=have).reason
    off_gpu = select_decoder("auto", runner=cpu_runner, available=lambda: "nvImageCodec is not installed (x)")
    assert off_gpu.reason == "the backend (ort-cpu) runs on the CPU"  # no GPU package is worth installing then
    with pytest.raises(BackendUnavailable, match="GPU decoding is not possible.*runs on the CPU"):
        select_decoder("gpu", runner=cpu_runner, available=have)
    from vggedge.spec import Preprocessing

    area = ModelSpec(preprocessing=Preprocessing(interpolation="area"))
    assert "bilinearly" in select_decoder("auto", runner=gpu_runner, spec=area, available=have).reason
    monkeypatch.setenv("VGGEDGE_KERNELS_FATBIN", "/nonexistent/preprocess.fatbin")
    unbuilt = select_decoder("auto", runner=gpu_runner, available=have)
    assert unbuilt.kind == "cpu" and "kernels are not built" in unbuilt.reason and "cmake" in unbuilt.reason
    monkeypatch.setenv("VGGEDGE_DECODER", "cpu")
    assert select_decoder(None, runner=gpu_runner, available=have).kind == "cpu"  # unset: the environment's
    monkeypatch.setenv("VGGEDGE_KERNELS_FATBIN", str(kernels_built))
    assert select_decoder("auto", runner=gpu_runner, available=have).kind == "gpu"  # explicit: wins over it
    with pytest.raises(ConfigError, match="choose one of auto, gpu, cpu"):
        select_decoder("nvjpeg")


SPEC = ModelSpec(input_name="images", output_name="scores", height=2, width=2, preprocessing=RAW_PIXELS,
                 num_classes=5, labels=None)


def test_device_path_end_to_end_over_the_fakes(ort_env, fake_cuda: FakeDriver, tmp_path: Path) -> None:
    """Files -> GPU decode (or CPU fallback) -> kernel into the slot's input buffer -> runner: no host copy."""
    ort_env()
    files = {"a.jpg": encoded("jpeg"), "b.png": encoded("png"), "c.jpg": encoded("corrupt"),
             "d.jpg": encoded("jpeg", 3), "e.jpg": encoded("progressive", 4)}
    paths = []
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        paths.append(tmp_path / name)
    paths.append(tmp_path / "missing.jpg")
    module = fake_nvimgcodec(fake_cuda)
    with OrtCudaRunner(b"onnx", RunnerOptions(max_batch=3, slots=2)) as runner:
        fill = DeviceImageFill(SPEC, runner.ctx, decoder=GpuDecoder(module=module))
        fill.preprocessor._kernel = fake_kernel(fake_cuda, SPEC)
        copied_to: list[int] = []
        real_copy = fake_cuda.memcpy_htod_async
        fake_cuda.memcpy_htod_async = lambda dest, src, stream=None: (copied_to.append(dest),
                                                                      real_copy(dest, src, stream))
        results = list(runner.run_on_device(image_batches(paths, 3), fill))
        inputs = {slot.device["images"].ptr for slot in runner.pipeline.slots}
        fill.free()
    batches: list[ImageBatch] = [r.tag for r in results]
    assert [b.rows for b in batches] == [[0, 1], [0, 1]]
    assert sorted(batches[0].errors) == [2] and sorted(batches[1].errors) == [2]
    assert "missing.jpg: cannot read image file" in str(batches[1].errors[2])
    for batch, result in zip(batches, results):
        for row, offset in enumerate(batch.rows):
            bgr = cv2.imdecode(np.frombuffer(Path(batch.sources[offset]).read_bytes(), np.uint8), cv2.IMREAD_COLOR)
            x = kernel_twin(bgr, SPEC, "BGR")[None]
            np.testing.assert_allclose(result.outputs["scores"][row], reference(x)[0], rtol=1e-6)
    assert fill.decoder.counts == {"gpu": 3, "cpu": 1, "failed": 1}
    assert copied_to and not inputs & set(copied_to)  # only the PNG's pixels were uploaded, never a tensor


def test_apps_batches_take_the_device_path_when_the_choice_says_gpu(ort_env, fake_cuda: FakeDriver,
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      tmp_path: Path) -> None:
    """classify/demo/compare go through apps.batches.iter_batches: GPU runner + nvImageCodec = device path."""
    from vggedge.apps.batches import iter_batches
    from vggedge.runtime.gpu.gpu_preprocess import GpuPreprocessor

    ort_env()
    module = fake_nvimgcodec(fake_cuda)
    monkeypatch.setitem(sys.modules, "nvidia.nvimgcodec", module)
    monkeypatch.setattr(gdecode, "nvimgcodec_reason", lambda: None)
    monkeypatch.setattr(GpuPreprocessor, "load", lambda self: setattr(self, "_kernel", fake_kernel(fake_cuda, SPEC))
                        or self)
    (tmp_path / "a.jpg").write_bytes(encoded("jpeg"))
    with OrtCudaRunner(b"onnx", RunnerOptions(max_batch=2)) as runner:
        got = [(batch.rows, out.batch) for batch, out in iter_batches(runner, SPEC, [tmp_path / "a.jpg"] * 3, 2)]
        assert got == [([0, 1], 2), ([0], 1)] and module.calls  # decoded by (fake) nvImageCodec
        module.calls.clear()
        list(iter_batches(runner, SPEC, [tmp_path / "a.jpg"], 2, decoder="cpu"))
        assert not module.calls  # the CPU decode pool instead


class ListWriter:
    def __init__(self) -> None:
        self.rows: list[dict] = []

    def write(self, rows) -> None:
        self.rows += list(rows)


def test_batch_job_decodes_on_the_gpu_and_records_bad_files(ort_env, fake_cuda: FakeDriver,
                                                            monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """vggedge batch (local engine): workers only read and check files; the GPU decodes; errors stay per file."""
    from vggedge.apps.batch.inputs import Item
    from vggedge.apps.batch.local import run_local
    from vggedge.apps.batch.rows import RowMaker
    from vggedge.runtime.gpu.gpu_preprocess import GpuPreprocessor

    ort_env()
    module = fake_nvimgcodec(fake_cuda, refuse=lambda data: data == refused)
    refused = encoded("jpeg", 5)
    monkeypatch.setitem(sys.modules, "nvidia.nvimgcodec", module)
    monkeypatch.setattr(gdecode, "nvimgcodec_reason", lambda: None)
    monkeypatch.setattr(GpuPreprocessor, "load", lambda self: setattr(self, "_kernel", fake_kernel(fake_cuda, SPEC))
                        or self)
    files = {"a.jpg": encoded("jpeg"), "b.png": encoded("png"), "c.jpg": b"\xff\xd8" + b"\x00" * 40 + b"\xff\xd9",
             "d.jpg": refused, "e.jpg": encoded("progressive", 6), "f.jpg": b""}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    items = [Item(str(tmp_path / name)) for name in files]
    rows, errors = ListWriter(), ListWriter()
    with OrtCudaRunner(b"onnx", RunnerOptions(max_batch=2, slots=2)) as runner:
        stages = run_local(items, SPEC, runner, RowMaker(SPEC, "m", "fp32", "ort-cuda", 2), rows, errors,
                           batch_size=2, workers=2)
    assert [Path(r["path"]).name for r in rows.rows] == ["a.jpg", "b.png", "d.jpg", "e.jpg"]
    kinds = {Path(e["path"]).name: e["kind"] for e in errors.rows}
    assert kinds == {"c.jpg": "not-an-image", "f.jpg": "empty"}  # empty: refused by the reading worker
    assert "not a decodable image" in next(e["reason"] for e in errors.rows if e["path"].endswith("c.jpg"))
    assert stages.images == 4 and stages.failed == 2
    assert sum(n for n, _ in module.calls) == 3  # a, d (refused there: CPU fallback) and e; the PNG went to the CPU


def test_ray_actor_decodes_checked_files_on_its_gpu(ort_env, fake_cuda: FakeDriver, monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    """The Ray engine's GPU route without Ray: CPU tasks check the files, the actor decodes them on its GPU
    into the runner's input (the local engine's fill); a file both decoders refuse is its own error row."""
    pytest.importorskip("pyarrow", reason="the Ray actor stages Arrow tables (pip install 'vggedge[batch]')")
    from vggedge.apps.batch import ray_actor
    from vggedge.apps.batch.decode import Limits
    from vggedge.apps.batch.ray_tasks import check_batch
    from vggedge.runtime.gpu.gpu_preprocess import GpuPreprocessor

    ort_env()
    refused = encoded("jpeg", 5)
    module = fake_nvimgcodec(fake_cuda, refuse=lambda data: data == refused)
    monkeypatch.setitem(sys.modules, "nvidia.nvimgcodec", module)
    monkeypatch.setattr(gdecode, "nvimgcodec_reason", lambda: None)
    monkeypatch.setattr(GpuPreprocessor, "load", lambda self: setattr(self, "_kernel", fake_kernel(fake_cuda, SPEC))
                        or self)
    runner = OrtCudaRunner(b"onnx", RunnerOptions(max_batch=8, slots=2))
    selection = types.SimpleNamespace(require_spec=lambda: SPEC, runner=runner, backend="ort-cuda")
    monkeypatch.setattr(ray_actor, "select_runner", lambda *a, **kw: selection)
    files = {"a.jpg": encoded("jpeg"), "b.png": encoded("png"), "c.jpg": encoded("corrupt"), "d.jpg": refused,
             "e.jpg": b"", "a2.jpg": encoded("jpeg")}
    paths = [str(tmp_path / name.replace("a2", "a")) for name in files]  # a.jpg twice: two rows
    checked = check_batch({"path": np.array(paths, dtype=object), "bytes": np.array(list(files.values()),
                                                                                     dtype=object)}, Limits())
    assert [str(k) for k in checked["kind"]] == ["", "", "", "", "empty", ""]  # the check reads, never decodes
    actor = ray_actor.RayInfer("m.onnx", "auto", "auto", 8, 2, False, None, decoder="auto")
    rows = actor(checked).to_pylist()
    assert actor.fill is not None and actor.decoder == "gpu"
    actor.close()
    assert not runner.active
    assert [r["path"] for r in rows] == paths and {r["decoder"] for r in rows} == {"gpu"}
    assert [r["kind"] for r in rows] == [None, None, "not-an-image", None, "empty", None]
    assert rows[2]["error"].startswith("not a decodable image (")  # the reason, not the offset the actor names it by
    good = [r for r in rows if not r["error"]]
    assert [r["top_k_index"] for r in good][0] == [r["top_k_index"] for r in good][3]  # a.jpg, same scores twice
    for row, data in zip(good, [files["a.jpg"], files["b.png"], refused, files["a2.jpg"]]):
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        want = reference(kernel_twin(bgr, SPEC, "BGR")[None])[0]
        assert row["top_k_index"][0] == int(np.argmax(want))
    assert sum(n for n, _ in module.calls) == 4  # a, c (nobody decodes it), d (refused: the CPU decodes it), a2


def test_stream_frames_go_to_the_device_once_and_are_preprocessed_there(ort_env, fake_cuda: FakeDriver) -> None:
    from vggedge.runtime.gpu.device_prepare import frame_fill

    ort_env()
    rng = np.random.default_rng(9)
    frames = [types.SimpleNamespace(image=rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)) for _ in range(3)]
    stamped = []
    assert frame_fill(types.SimpleNamespace(name="ort-cpu"), SPEC) is None  # a CPU runner: the CPU path
    with OrtCudaRunner(b"onnx", RunnerOptions(max_batch=2)) as runner:
        assert frame_fill(runner, SPEC, stamped.append, "cpu") is None  # asked for host preprocessing
        fill = frame_fill(runner, SPEC, stamped.append)
        fill.preprocessor._kernel = fake_kernel(fake_cuda, SPEC)
        results = list(runner.run_on_device([frames[:2], frames[2:]], fill))
        fill.free()
    assert stamped == frames and [r.batch for r in results] == [2, 1]
    got = np.concatenate([r.outputs["scores"] for r in results])
    want = reference(np.stack([kernel_twin(f.image, SPEC, "BGR") for f in frames]))
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_environment_variable_chooses_for_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    gpu_runner = OrtCudaRunner(b"onnx")
    monkeypatch.setenv("VGGEDGE_DECODER", "gpu")
    with pytest.raises(BackendUnavailable, match="GPU decoding is not possible.*not installed"):
        select_decoder(None, runner=gpu_runner, available=lambda: "nvImageCodec is not installed (x)")
    monkeypatch.setenv("VGGEDGE_DECODER", "nvjpeg")
    with pytest.raises(ConfigError, match="VGGEDGE_DECODER='nvjpeg': expected one of auto, gpu, cpu"):
        select_decoder(None, runner=gpu_runner)


def test_frames_need_no_nvimgcodec_but_a_gpu_runner_and_the_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stream's choice: decoded frames go to the device on a GPU runner, whatever nvImageCodec's state."""
    from vggedge.runtime.device_path import select_frame_path

    monkeypatch.delenv("VGGEDGE_DECODER", raising=False)
    monkeypatch.setattr(gdecode, "nvimgcodec_reason", lambda: "nvImageCodec is not installed (x)")
    gpu_runner = OrtCudaRunner(b"onnx")
    choice = select_frame_path(None, runner=gpu_runner, spec=SPEC)
    assert (choice.kind, choice.reason) == ("gpu", "frames uploaded once, preprocessed on the device")
    assert select_frame_path("cpu", runner=gpu_runner, spec=SPEC).reason == "asked for the CPU preprocessing"
    cpu_runner = types.SimpleNamespace(name="ort-cpu")
    assert select_frame_path(None, runner=cpu_runner, spec=SPEC).kind == "cpu"
    with pytest.raises(BackendUnavailable, match=r"^GPU preprocessing is not possible: the backend \(ort-cpu\) "
                                                 r"runs on the CPU \(decoder 'gpu' was asked for"):
        select_frame_path("gpu", runner=cpu_runner, spec=SPEC)


def test_sixteen_bit_fallbacks_are_rounded_and_a_bad_frame_is_its_own_error(ort_env, fake_cuda: FakeDriver,
                                                                             tmp_path: Path) -> None:
    ort_env()
    png16 = tmp_path / "deep.png"
    deep = (np.random.default_rng(2).integers(0, 65536, (20, 30, 3))).astype(np.uint16)
    cv2.imwrite(str(png16), deep)
    flat = np.zeros((5, 5), np.uint8)  # a frame of the wrong shape: refused by the preprocessor
    with OrtCudaRunner(b"onnx", RunnerOptions(max_batch=3)) as runner:
        fill = DeviceImageFill(SPEC, runner.ctx, decoder=GpuDecoder(module=fake_nvimgcodec(fake_cuda)))
        fill.preprocessor._kernel = fake_kernel(fake_cuda, SPEC)
        (result,) = list(runner.run_on_device([ImageBatch(0, [png16, flat, tmp_path / "gone.jpg"])], fill))
        fill.free()
    batch = result.tag
    assert batch.rows == [0] and sorted(batch.errors) == [1, 2] and "uint8 HxWx3" in str(batch.errors[1])
    eight = np.clip(np.rint(deep.astype(np.float32) * np.float32(255 / 65535)), 0, 255).astype(np.uint8)
    want = reference(kernel_twin(eight, SPEC, "BGR")[None])
    np.testing.assert_allclose(result.outputs["scores"], want, rtol=1e-6)
