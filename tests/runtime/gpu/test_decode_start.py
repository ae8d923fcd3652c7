"""nvImageCodec at its edges: what it prints on its own, a decoder that cannot start, images too large to decode
and batches too large to hold. The real library where it installs (its wheel imports without a GPU), else the fake."""
from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import textwrap
import threading
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
from gpu_fakes import fake_nvimgcodec

from vggedge.errors import BackendUnavailable, ImageError
from vggedge.image_header import MAX_DECODE_PIXELS
from vggedge.runtime.base import RunnerOptions
from vggedge.runtime.gpu.decode import GpuDecoder, gpu_reason, jpeg_frame, nvimgcodec_reason
from vggedge.runtime.gpu.native_stderr import caught_stderr
from vggedge.runtime.gpu.ort_cuda import OrtCudaRunner
from vggedge.spec import RAW_PIXELS, ModelSpec

REPO = Path(__file__).resolve().parents[3]
PHOTO = REPO / "calib" / "coffee.jpg"
real_nvimgcodec = pytest.mark.skipif(nvimgcodec_reason() is not None,
                                     reason="nvImageCodec is not installed (pip install nvidia-nvimgcodec-cu13 "
                                            "nvidia-nvjpeg; it imports without a GPU)")


def huge_jpeg(height: int, width: int) -> bytes:
    """A small real JPEG whose frame header declares ``height`` x ``width`` (as a decompression bomb does)."""
    data = bytearray(cv2.imencode(".jpg", np.full((16, 16, 3), 90, np.uint8))[1].tobytes())
    marker = jpeg_frame(bytes(data)).marker
    at = bytes(data).index(bytes([0xFF, marker]))
    data[at + 5:at + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def test_an_image_over_the_pixel_limit_never_reaches_the_gpu() -> None:
    side = 60000  # 3.6e9 pixels: 10.8 GB of device memory as RGB
    assert side * side > MAX_DECODE_PIXELS
    module = fake_nvimgcodec()
    decoder = GpuDecoder(module=module)
    bomb, fine = huge_jpeg(side, side), huge_jpeg(16, 16)
    assert gpu_reason(bomb) == f"{side}x{side} pixels, over the decode limit" and gpu_reason(fine) is None
    out = decoder.decode([bomb, fine], ["bomb.jpg", "fine.jpg"])
    assert isinstance(out[0].error, ImageError)
    assert str(out[0].error).startswith(f"bomb.jpg: image is {side}x{side} pixels; over {MAX_DECODE_PIXELS}")
    assert out[1].on_device and module.calls == [(1, 0)]  # only the small one went to the GPU decoder


def fake_that_cannot_start() -> object:
    module = fake_nvimgcodec()

    def refuse(self, device_id: int = 0, **kwargs) -> None:
        os.write(2, b"\x1b[0;31m[ERROR] \x1b[0m[nvimgcodec] Failed to create CUDA stream\n")
        raise RuntimeError("CUDA Runtime failure: '#35' at /home/jenkins/agent/build/device_utils.h:32")

    module.Decoder.__init__ = refuse
    return module


def test_auto_decodes_on_the_cpu_when_the_gpu_decoder_cannot_start(caplog: pytest.LogCaptureFixture) -> None:
    decoder = GpuDecoder(module=fake_that_cannot_start(), fallback=True)
    with caplog.at_level(logging.WARNING, logger="vggedge.runtime.gpu.decode"):
        first = decoder.decode([PHOTO.read_bytes()], ["coffee.jpg"])
        second = decoder.decode([PHOTO.read_bytes(), b"\x89PNG"], ["coffee.jpg", "x.png"])
    np.testing.assert_array_equal(first[0].host, cv2.imread(str(PHOTO)))
    assert not first[0].on_device and second[0].host is not None and second[1].error is not None
    assert "driver 580" in first[0].why_cpu and "Failed to create CUDA stream" in first[0].why_cpu
    assert "/home/jenkins" not in first[0].why_cpu and "\x1b" not in first[0].why_cpu
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("nvImageCodec cannot start a decoder on GPU 0")
    assert decoder.counts == {"gpu": 0, "cpu": 2, "failed": 1}


def test_gpu_asked_for_fails_with_the_reason() -> None:
    with pytest.raises(BackendUnavailable, match=r"cannot start a decoder on GPU 3 \(CUDA Runtime failure: '#35': "
                                                 r"no NVIDIA driver, or one older"):
        GpuDecoder(3, module=fake_that_cannot_start()).decode([PHOTO.read_bytes()])


def test_caught_stderr_sorts_each_line_and_gives_back_the_rest(capfd: pytest.CaptureFixture) -> None:
    claimed: list[str] = []

    def claim(line: str) -> bool:
        claimed.append(line)
        return line == "noise"

    with caught_stderr(claim) as unclaimed:
        os.write(2, b"\x1b[0;32mnoise\x1b[0m\n\nprogress 10%\r")
    assert claimed == ["noise", "progress 10%"] and unclaimed == ["progress 10%"]
    assert capfd.readouterr().err == "\nprogress 10%\r"  # what nobody claimed comes back as it was written
    with pytest.raises(RuntimeError, match="boom"), caught_stderr(claim) as unclaimed:
        os.write(2, b"noise\ndlopen libcuda.so failed!")
        raise RuntimeError("boom")
    assert unclaimed == ["dlopen libcuda.so failed!"] and capfd.readouterr().err == ""  # the caller's error says it
    probe = subprocess.run([sys.executable, "-c", "import os; os.write(2, b'still here')"], capture_output=True)
    assert probe.stderr == b"still here"  # fd 2 of this process was restored (the child inherits it)


def test_import_sorts_what_the_library_prints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture) -> None:
    """A module printing nvImageCodec 0.9's import lines (nvJPEG missing too): noise to DEBUG, one warning with the
    package for nvJPEG, an unknown line shown as printed."""
    from vggedge.runtime.gpu import decode as gdecode

    (tmp_path / "printing_codec.py").write_text(textwrap.dedent("""
        import os
        os.write(2, b"Failed to load nvjpeg library! Please install CUDA toolkit (nvidia-nvjpeg-cu13).\\n"
                    b"\\x1b[0;31m[ERROR] \\x1b[0m[nvjpeg2k_ext] Failed to load nvJPEG2000 library\\n"
                    b"Failed to load nvtiff library! Please install nvTIFF\\n"
                    b"something new went wrong\\n")
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(gdecode, "MODULE", "printing_codec")
    with caplog.at_level(logging.DEBUG, logger="vggedge.runtime.gpu.decode"):
        gdecode.import_nvimgcodec()
    by_level = {level: [r.getMessage() for r in caplog.records if r.levelno == level]
                for level in (logging.DEBUG, logging.WARNING)}
    assert len(by_level[logging.DEBUG]) == 3 and "[ERROR] [nvjpeg2k_ext]" in by_level[logging.DEBUG][1]
    assert len(by_level[logging.WARNING]) == 1 and by_level[logging.WARNING][0].startswith(
        "nvImageCodec cannot load nvJPEG")
    assert "pip install nvidia-nvjpeg (CUDA 13 builds" in by_level[logging.WARNING][0]
    assert capfd.readouterr().err == "something new went wrong\n"


def run_python(code: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYNVIMGCODEC_VERBOSITY"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          cwd=REPO, timeout=120, env=env)


@real_nvimgcodec
def test_the_real_library_imports_without_a_line_at_default_verbosity() -> None:
    raw = run_python("from nvidia import nvimgcodec")
    assert "Failed to load" in raw.stderr  # what a plain import prints (nvJPEG2000 and nvTIFF are not installed)
    quiet = run_python("""
        import logging
        logging.basicConfig(level=logging.WARNING)
        from vggedge.runtime.gpu.decode import import_nvimgcodec
        print(import_nvimgcodec().__version__)
    """)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.strip() and "Failed to load nvjpeg2k" not in quiet.stderr and "nvtiff" not in quiet.stderr
    nvjpeg = "Failed to load nvjpeg library" in raw.stderr
    lines = quiet.stderr.strip().splitlines()
    assert len(lines) == nvjpeg  # nothing, or (nvJPEG missing) one warning naming the package
    assert all("cannot load nvJPEG" in line and "pip install nvidia-nvjpeg" in line for line in lines)
    verbose = run_python("""
        import logging
        logging.basicConfig(level=logging.DEBUG)
        from vggedge.runtime.gpu.decode import import_nvimgcodec
        import_nvimgcodec()
    """)
    assert "DEBUG:vggedge.runtime.gpu.decode:nvImageCodec: Failed to load nvjpeg2k library" in verbose.stderr


@real_nvimgcodec
def test_the_real_decoder_without_a_driver_leaves_auto_on_the_cpu() -> None:
    done = run_python(f"""
        import logging
        logging.basicConfig(level=logging.WARNING)
        from vggedge.runtime.gpu.decode import GpuDecoder
        decoder = GpuDecoder(fallback=True)
        out = decoder.decode([open({str(PHOTO)!r}, "rb").read()], ["coffee.jpg"])[0]
        print("DEVICE" if out.on_device else "CPU " + str(out.host.shape) + " " + out.why_cpu)
    """)
    assert done.returncode == 0, done.stderr
    if done.stdout.startswith("DEVICE"):
        pytest.skip("a GPU decodes here: the gpu-marked tests cover it")
    assert done.stdout.startswith("CPU (400, 600, 3) nvImageCodec cannot start a decoder on GPU 0")
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("WARNING:vggedge.runtime.gpu.decode:nvImageCodec cannot start")
    assert lines[0].endswith("images are decoded on the CPU instead")


SPEC = ModelSpec(input_name="images", output_name="scores", height=2, width=2, preprocessing=RAW_PIXELS,
                 num_classes=5, labels=None)


@pytest.fixture()
def gpu_without_decoder(ort_env, fake_cuda, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """A (fake) GPU runner's world where nvImageCodec is installed but its decoder cannot start."""
    from gpu_fakes import fake_kernel

    from vggedge.runtime.gpu import decode as gdecode
    from vggedge.runtime.gpu.gpu_preprocess import GpuPreprocessor

    fatbin = tmp_path / "preprocess.fatbin"
    fatbin.write_bytes(b"fake")
    monkeypatch.setenv("VGGEDGE_KERNELS_FATBIN", str(fatbin))
    ort_env()
    monkeypatch.setitem(sys.modules, "nvidia.nvimgcodec", fake_that_cannot_start())
    monkeypatch.setattr(gdecode, "nvimgcodec_reason", lambda: None)
    monkeypatch.setattr(GpuPreprocessor, "load", lambda self: setattr(self, "_kernel", fake_kernel(fake_cuda, SPEC))
                        or self)


def test_apps_on_auto_go_on_when_the_gpu_decoder_cannot_start(gpu_without_decoder) -> None:
    """classify/compare/bench batches (apps.batches.iter_batches) on a GPU runner: ``auto`` decodes on the CPU and
    preprocesses on the device; ``gpu`` asked for stops with the reason."""
    from vggedge.apps.batches import iter_batches

    with OrtCudaRunner(b"onnx", RunnerOptions(max_batch=2)) as runner:
        got = [(batch.rows, out.batch) for batch, out in iter_batches(runner, SPEC, [PHOTO] * 3, 2, decoder="auto")]
        assert got == [([0, 1], 2), ([0], 1)]
        with pytest.raises(BackendUnavailable, match="cannot start a decoder on GPU 0"):
            list(iter_batches(runner, SPEC, [PHOTO] * 3, 2, decoder="gpu"))


class ListWriter:
    def __init__(self) -> None:
        self.rows: list[dict] = []

    def write(self, rows) -> None:
        self.rows += list(rows)


def test_a_batch_job_on_auto_goes_on_when_the_gpu_decoder_cannot_start(gpu_without_decoder, tmp_path: Path) -> None:
    from vggedge.apps.batch.inputs import Item
    from vggedge.apps.batch.local import run_local
    from vggedge.apps.batch.rows import RowMaker

    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8" + b"\x00" * 40 + b"\xff\xd9")
    items = [Item(str(PHOTO)), Item(str(tmp_path / "bad.jpg")), Item(str(PHOTO))]
    for want in ("auto", "gpu"):
        rows, errors = ListWriter(), ListWriter()
        with OrtCudaRunner(b"onnx", RunnerOptions(max_batch=2, slots=2)) as runner:
            job = lambda: run_local(items, SPEC, runner, RowMaker(SPEC, "m", "fp32", "ort-cuda", 2),  # noqa: E731
                                    rows, errors, batch_size=2, workers=2, decoder=want)
            if want == "gpu":
                with pytest.raises(BackendUnavailable, match="cannot start a decoder on GPU 0"):
                    job()
                continue
            stages = job()
        assert [Path(r["path"]).name for r in rows.rows] == ["coffee.jpg", "coffee.jpg"]
        assert [Path(e["path"]).name for e in errors.rows] == ["bad.jpg"] and stages.images == 2


@real_nvimgcodec
def test_the_real_library_decodes_what_our_decoder_asks_as_the_cpu_decoder_does() -> None:
    """GpuDecoder's calls (batch of bytes, DecodeParams, its ``fancy_upsampling`` option, failures as None) against
    the real nvImageCodec, on its CPU backend (no GPU here): upright RGB equal to the CPU decoder's, EXIF included.
    With the option off chroma differs by tens of levels, so the option is seen to reach the decoder."""
    from PIL import Image as PilImage

    from vggedge.preprocess import decode_image
    from vggedge.runtime.gpu.decode import import_nvimgcodec

    real = import_nvimgcodec()
    cpu = real.Backend(real.BackendKind.CPU_ONLY)
    module = types.SimpleNamespace(DecodeParams=real.DecodeParams,
                                   Decoder=lambda **kw: real.Decoder(backends=[cpu], **kw))
    photo = cv2.imread(str(PHOTO))
    exif = PilImage.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 clockwise to view
    rotated = io.BytesIO()
    PilImage.fromarray(photo[:, :, ::-1]).save(rotated, "JPEG", quality=90, exif=exif.tobytes())
    datas = [PHOTO.read_bytes(), (REPO / "calib" / "china.jpg").read_bytes(), rotated.getvalue()]
    datas.append(datas[0][:300] + b"\xff\xd9")  # broken: None from the library, the CPU decoder's turn
    worst = {}
    for fancy in (True, False):
        decoder = GpuDecoder(real.NVIMGCODEC_DEVICE_CPU_ONLY, module=module, fancy_upsampling=fancy)
        images = decoder._gpu_batch(datas, 0)
        assert images[3] is None
        got = [np.asarray(image.cpu()) for image in images[:3]]
        want = [decode_image(data)[:, :, ::-1] for data in datas[:3]]
        assert [g.shape for g in got] == [w.shape for w in want] and got[2].shape == (600, 400, 3)  # upright
        worst[fancy] = max(int(np.abs(g.astype(int) - w).max()) for g, w in zip(got, want))
    assert worst[True] == 0 and worst[False] > 8


def test_a_batch_over_the_pixel_budget_is_decoded_in_parts_each_freed_before_the_next(
        ort_env, fake_cuda, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Six 600x400 photos with a budget of two: three decode calls, the stream synchronised and the last part's
    device images freed before each next one, and the same rows and outputs as one call. A slot refilled
    frees its last batch's images before decoding new ones."""
    import weakref

    from gpu_fakes import fake_kernel

    from vggedge.apps.batches import image_batches
    from vggedge.runtime.gpu.device_prepare import DeviceImageFill, pixel_parts

    assert [list(r) for r in pixel_parts([5, 5, 1, 9, 20, 0], 10)] == [[0, 1], [2, 3], [4], [5]]
    assert pixel_parts([], 10) == []
    ort_env()
    paths = [tmp_path / f"{i}.jpg" for i in range(6)]
    photo = cv2.imread(str(PHOTO))
    for i, path in enumerate(paths):
        cv2.imwrite(str(path), np.roll(photo, 40 * i, axis=1))
    syncs: list[int] = []
    monkeypatch.setattr(fake_cuda.Stream, "synchronize", lambda self: syncs.append(self.handle))
    outputs = {}
    for budget in (2 * 600 * 400, 10**9):
        module = fake_nvimgcodec(fake_cuda)
        alive: weakref.WeakSet = weakref.WeakSet()
        calls: list[tuple[int, int, int]] = []  # (images asked for, earlier images alive, synchronisations)
        real_decode = module.Decoder.decode

        def tracking(self, src, params=None, cuda_stream=0, real_decode=real_decode, alive=alive, calls=calls):
            calls.append((len(src), len(alive), len(syncs)))
            images = real_decode(self, src, params, cuda_stream)
            alive.update(images)
            return images

        module.Decoder.decode = tracking
        syncs.clear()
        with OrtCudaRunner(b"onnx", RunnerOptions(max_batch=6, slots=1)) as runner:
            fill = DeviceImageFill(SPEC, runner.ctx, decoder=GpuDecoder(module=module), pixel_budget=budget)
            fill.preprocessor._kernel = fake_kernel(fake_cuda, SPEC)
            results = list(runner.run_on_device(image_batches(paths * (budget // 10**9 + 1), 6), fill))
            fill.free()
        assert [r.tag.rows for r in results] == [list(range(6))] * len(results)
        outputs[budget] = results[0].outputs["scores"]
        if budget < 10**9:
            assert calls == [(2, 0, 0), (2, 0, 1), (2, 0, 2)]  # each part alone in device memory
        else:  # two batches through one slot: the first batch's images are gone before the second's decode
            assert [(n, earlier) for n, earlier, _ in calls] == [(6, 0), (6, 0)]
    np.testing.assert_array_equal(*outputs.values())


def test_the_gpu_path_never_reads_a_pipe(ort_env, fake_cuda, tmp_path: Path) -> None:
    """A FIFO among the sources (read forever, or until memory runs out, by a plain read) is that file's error."""
    from gpu_fakes import fake_kernel

    from vggedge.apps.batches import image_batches
    from vggedge.runtime.gpu.device_prepare import DeviceImageFill

    ort_env()
    fifo = tmp_path / "camera.jpg"
    os.mkfifo(fifo)
    # a writer that closes at once: a reader that opens the pipe gets an empty file instead of hanging the test
    writer = threading.Thread(target=lambda: os.close(os.open(fifo, os.O_WRONLY)), daemon=True)
    writer.start()
    try:
        with OrtCudaRunner(b"onnx", RunnerOptions(max_batch=2)) as runner:
            fill = DeviceImageFill(SPEC, runner.ctx, decoder=GpuDecoder(module=fake_nvimgcodec(fake_cuda)))
            fill.preprocessor._kernel = fake_kernel(fake_cuda, SPEC)
            (result,) = list(runner.run_on_device(image_batches([fifo, PHOTO], 2), fill))
            fill.free()
    finally:
        os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))  # lets the writer's open() return
        writer.join(5)
    assert result.tag.rows == [1]
    assert str(result.tag.errors[0]) == f"{fifo}: not a regular file (a pipe, device or socket); not read"
