"""The GPU check's newer sections: library noise, GPU decoding, each job end to end, and the peers in the same run.

Called by ``gpu_check.py`` (sections ``noise``, ``decode``, ``jobs``, ``peers``);
the pure ratio maths is in ``gpu_check_report.py``. Every section skips with its
reason when a piece is missing (pycuda, onnxruntime-gpu, nvImageCodec, torch).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from gpu_check_report import (BLOCKING, OVERLAP, RAW, TORCH, TORCH_E2E, VGG_DEVICE, VGG_HOST,  # noqa: E402
                               SkipSection, median_rate)

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------------ helpers
def need(what: str) -> None:
    """SkipSection unless ``what`` ("cuda", "ort", "nvimgcodec", "torch") is usable here."""
    from vggedge.runtime.gpu.cuda import cuda_available

    reason = cuda_available()
    if reason:
        raise SkipSection(reason)
    if what == "ort":
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise SkipSection(f"onnxruntime {ort.__version__} has no CUDAExecutionProvider")
    if what == "nvimgcodec":
        from vggedge.runtime.gpu.decode import nvimgcodec_reason

        if nvimgcodec_reason():
            raise SkipSection(nvimgcodec_reason())
    if what == "torch":
        try:
            import torch
        except ImportError as exc:
            raise SkipSection(f"torch not importable ({exc})")
        if not torch.cuda.is_available():
            raise SkipSection("torch sees no CUDA device")


def timed(fn: Callable[[], int], seconds: float, repeats: int = 3) -> float:
    """Median images/s over ``repeats`` windows of at least ``seconds`` each (after one warm-up call)."""
    fn()
    rates = []
    for _ in range(repeats):
        images, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            images += fn()
        rates.append(images / (time.perf_counter() - t0))
    return median_rate(rates)


def make_jpegs(folder: Path, count: int, size: tuple[int, int] = (1920, 1080)) -> list[Path]:
    """``count`` distinct 1080p JPEG files made from calib/ (a different crop/shift per file), in parallel."""
    import cv2
    import numpy as np

    from vggedge.decode_pool import shared_pool
    from vggedge.preprocess import list_images

    photos = [cv2.resize(cv2.imread(str(p)), size, interpolation=cv2.INTER_CUBIC) for p in list_images(ROOT / "calib")]
    folder.mkdir(parents=True, exist_ok=True)

    def one(i: int) -> Path:
        path = folder / f"f{i:05d}.jpg"
        if not path.exists():
            image = np.roll(photos[i % len(photos)], shift=(i * 7) % size[0], axis=1)
            cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        return path

    return shared_pool().map(one, range(count))


# ------------------------------------------------------------------------------------------------ noise
NOISE_SCRIPT = r"""
import numpy as np, sys
from vggedge.runtime.base import RunnerOptions
from vggedge.runtime.gpu.ort_cuda import OrtCudaRunner
with OrtCudaRunner(sys.argv[1], RunnerOptions(max_batch=8)) as r:
    x = np.zeros((8, 3, 224, 224), np.dtype(r.pipeline.inputs[0].dtype))
    r.infer({r.pipeline.inputs[0].name: x})
try:
    from vggedge.runtime.gpu.decode import GpuDecoder
    import cv2
    png = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    jpg = cv2.imencode(".jpg", np.zeros((64, 64, 3), np.uint8))[1].tobytes()
    GpuDecoder().decode([jpg, png, jpg[:100] + b"\xff\xd9"], ["a", "b", "c"])
except Exception as exc:
    print("VGGEDGE-NOTE nvimgcodec part skipped:", exc)
print("VGGEDGE-DONE")
"""


def noise_check(model: Path) -> dict:
    """Lines a default-verbosity FP16 session (and a GPU decode with bad files) print: must be none."""
    need("ort")
    done = subprocess.run([sys.executable, "-c", NOISE_SCRIPT, str(model)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    noise = [line for line in lines if not line.startswith("VGGEDGE-")]
    return {"returncode": done.returncode, "noise_lines": len(noise), "first_noise": noise[:5],
            "notes": [line for line in lines if line.startswith("VGGEDGE-NOTE")],
            "passed": done.returncode == 0 and not noise and "VGGEDGE-DONE" in done.stdout}


# ------------------------------------------------------------------------------------------------ decode
def _download(ptr: int, height: int, width: int, pitch: int):
    import numpy as np

    from vggedge.runtime.gpu.cuda import driver_module

    host = np.empty((height, pitch), np.uint8)
    driver_module().memcpy_dtoh(host, ptr)
    return host[:, :width * 3].reshape(height, width, 3)


def decode_check(logits_model: Path, photos: Sequence[Path]) -> dict:
    """nvImageCodec against the CPU decoder: max/mean pixel difference, and top-1 of the two decode paths."""
    need("nvimgcodec")
    import numpy as np

    from vggedge.apps.batches import iter_batches
    from vggedge.preprocess import read_image
    from vggedge.runtime.base import RunnerOptions
    from vggedge.runtime.gpu import cuda as vcuda
    from vggedge.runtime.gpu.decode import GpuDecoder
    from vggedge.spec import load_spec_for

    rows, ctx = [], vcuda.CudaContext(0).open()
    for fancy in (True, False):
        decoder = GpuDecoder(fancy_upsampling=fancy)
        worst, means = 0.0, []
        with ctx:
            decoded = decoder.decode([p.read_bytes() for p in photos], [p.name for p in photos])
            ctx.synchronize()
            for path, image in zip(photos, decoded):
                cpu = read_image(path)[:, :, ::-1].astype(np.int16)  # RGB
                if not image.on_device:
                    continue
                gpu = _download(image.ptr, image.height, image.width, image.pitch).astype(np.int16)
                if gpu.shape != cpu.shape:
                    worst = float("inf")
                    continue
                diff = np.abs(gpu - cpu)
                worst, _ = max(worst, float(diff.max())), means.append(float(diff.mean()))
        rows.append({"fancy_upsampling": fancy, "photos": len(photos), "on_gpu": decoder.counts["gpu"],
                     "cpu_fallback": decoder.counts["cpu"], "max_pixel_diff": worst,
                     "mean_pixel_diff": float(np.mean(means)) if means else None})
    need("ort")
    from vggedge.runtime.gpu.ort_cuda import OrtCudaRunner

    spec = load_spec_for(logits_model)
    logits = {}
    with OrtCudaRunner(logits_model, RunnerOptions(max_batch=8)) as runner:
        for kind in ("gpu", "cpu"):
            out = []
            for batch, result in iter_batches(runner, spec, list(photos), 8, decoder=kind):
                rows_of = {o: r for r, o in enumerate(batch.rows)}
                out += [result.outputs[spec.output_name][rows_of[o]].copy() for o in range(len(batch.sources))
                        if o in rows_of]
            logits[kind] = np.stack(out)
    top1 = float((logits["gpu"].argmax(1) == logits["cpu"].argmax(1)).mean())
    rel = float(np.abs(logits["gpu"] - logits["cpu"]).max() / np.abs(logits["cpu"]).max())
    return {"rows": rows, "top1_agreement_gpu_vs_cpu_decode": top1, "max_logit_rel_diff": rel,
            "note": "GPU decode (nvImageCodec) vs OpenCV, eval/ + calib/ photos; logits of the FP32 model",
            "passed": top1 >= 0.9 and rows[0]["max_pixel_diff"] <= 64}


# ------------------------------------------------------------------------------------------------ jobs
def jobs_check(model: Path, files: list[Path], quick: bool) -> dict:
    """Each job end to end on ``files`` (distinct 1080p JPEGs): bench, batch, classify; GPU and CPU decoding."""
    need("ort")
    from vggedge import batch as vbatch
    from vggedge.apps.bench import bench
    from vggedge.apps.classify import Classifier
    from vggedge.errors import VggEdgeError

    seconds = 1.0 if quick else 2.0
    rows: list[dict[str, Any]] = []
    for decoder in ("gpu", "cpu"):  # asked for explicitly (--decoder): a GPU that cannot decode fails the row
        try:
            report = bench(model, "ort-cuda", (32, 128), warmup_s=0.5, duration_s=seconds, min_iters=5,
                           images=files[:512], progress=False, end_to_end=True, rounds=2, decoder=decoder)
            for r in report.results:
                rows.append({"job": "bench --end-to-end", "decoder": report.settings.get("decoder", decoder),
                             "batch": r.batch, "e2e_img_s": r.end_to_end_throughput,
                             "infer_img_s": r.model_throughput, "ratio": r.ratio})
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                summary = vbatch.run([str(f) for f in files], Path(tmp) / "out.jsonl", model, backend="ort-cuda",
                                     precision="as-given", batch_size=128, progress=False, decoder=decoder)
                rows.append({"job": "batch", "decoder": summary.decoder, "batch": 128, "files": summary.images,
                             "e2e_img_s": summary.images / summary.seconds,
                             "wall_img_s": summary.images / (time.perf_counter() - t0), "failed": summary.failed})
            with Classifier(model, "ort-cuda", batch_size=32, decoder=decoder) as clf:
                subset = files[:512]
                t0 = time.perf_counter()
                done = sum(1 for r in clf.classify_iter(subset) if r.ok)
                rows.append({"job": "classify", "decoder": clf.decoder_choice.kind, "batch": 32,
                             "e2e_img_s": done / (time.perf_counter() - t0)})
        except VggEdgeError as exc:  # e.g. --decoder gpu where nvImageCodec is missing: the row says why
            rows.append({"job": "all", "decoder": decoder, "error": str(exc)})
    rows += stream_rows(model, files, quick)
    return {"rows": rows, "files": len(files), "model": Path(model).name,
            "note": "images/s end to end on distinct 1080p JPEG files (decode + preprocess + infer + outputs); "
                    "stream: frames/s of a 1080p clip, and a paced (live) clip that must not stall"}


def stream_rows(model: Path, files: list[Path], quick: bool) -> list[dict[str, Any]]:
    """``stream`` on a 1080p MJPG clip made from ``files``: frames/s read as a file (batches of 32, frames
    uploaded once and preprocessed on the device, or on the CPU), and a paced clip (a live source: the next
    frame is taken only when the model has the last one back) that must deliver its frames within 60 s."""
    import threading

    import cv2

    from vggedge.apps.stream import stream
    from vggedge.errors import VggEdgeError

    clip = files[0].parent / "clip.avi"
    if not clip.exists():
        first = cv2.imread(str(files[0]))
        writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, first.shape[1::-1])
        for path in files[:64 if quick else 256]:
            writer.write(cv2.imread(str(path)))
        writer.release()
    rows: list[dict[str, Any]] = []
    for decoder in ("gpu", "cpu"):
        try:
            run = stream([str(clip)], model, backend="ort-cuda", precision="as-given", batch_size=32,
                         decoder=decoder)
            frames = sum(1 for _ in run)
            summary = run.summary()  # frames/s from the first frame on, after the session loaded
            rows.append({"job": "stream", "decoder": run.decoder.kind, "batch": 32, "e2e_img_s": summary["fps"],
                         "frames": frames})
            paced_ms = None
            live: list[Any] = []
            paced = stream([str(clip)], model, backend="ort-cuda", precision="as-given", decoder=decoder,
                           pace=True, max_frames=20)
            worker = threading.Thread(target=lambda: live.extend(paced), daemon=True)
            worker.start()
            worker.join(60)
            if not worker.is_alive():
                paced_ms = paced.summary()["latency_ms"].get("e2e", {}).get("p50")
            rows.append({"job": "stream --pace", "decoder": paced.decoder.kind, "batch": 1, "frames": len(live),
                         "latency_p50_ms": paced_ms,
                         **({"error": "stalled: fewer than 20 frames in 60 s"} if worker.is_alive() else {})})
        except VggEdgeError as exc:
            rows.append({"job": "stream", "decoder": decoder, "error": str(exc)})
    return rows


# ------------------------------------------------------------------------------------------------ peers
def peers_check(model: Path, fp32_model: Path, files: list[Path], quick: bool) -> dict:
    """In the same run: raw onnxruntime-gpu (same options), vggedge inference only, torch peers, CUDA graphs, b1."""
    need("ort")
    import numpy as np
    import onnxruntime as ort

    from vggedge.runtime.base import RunnerOptions
    from vggedge.runtime.gpu.ort_cuda import OrtCudaRunner
    from vggedge.runtime.gpu.ort_cuda_options import CudaOptions

    seconds = 0.3 if quick else 1.0  # per window; three windows per row (median)
    rows: list[dict[str, Any]] = []
    session_in = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).get_inputs()[0]
    dtype = np.float16 if "float16" in session_in.type else np.float32
    for nhwc in (True, False):
        sess = ort.InferenceSession(str(model), providers=[("CUDAExecutionProvider", {"prefer_nhwc": str(int(nhwc))})])
        for b in (32, 128):
            x = ort.OrtValue.ortvalue_from_numpy(np.random.default_rng(b).standard_normal((b, 3, 224, 224))
                                                 .astype(dtype), "cuda", 0)
            binding = sess.io_binding()
            binding.bind_ortvalue_input(session_in.name, x)
            binding.bind_output(sess.get_outputs()[0].name, "cuda", 0)

            def raw() -> int:
                sess.run_with_iobinding(binding)
                binding.synchronize_outputs()
                return b

            rows.append({"what": RAW.format(int(nhwc)), "batch": b, "img_s": timed(raw, seconds)})
    for graph in (False, True):
        try:
            rows += _vggedge_rates(model, CudaOptions(cuda_graph=graph), seconds)
        except Exception as exc:  # e.g. a build that cannot capture on our stream: recorded, the rest goes on
            rows.append({"what": VGG_DEVICE.format(graph), "batch": 128, "img_s": 0.0,
                         "error": f"{type(exc).__name__}: {exc}"[:300]})
    for slots in (1, 2, 3):
        with OrtCudaRunner(model, RunnerOptions(max_batch=1, slots=slots)) as runner:
            spec = runner.pipeline.inputs[0]
            one = np.zeros((1, *spec.shape[1:]), spec.dtype)
            def blocking() -> int:
                for _ in range(32):
                    runner.infer({spec.name: one})
                return 32

            if slots == 1:
                rows.append({"what": BLOCKING, "batch": 1, "img_s": timed(blocking, seconds)})
            rows.append({"what": OVERLAP.format(slots), "batch": 1,
                         "img_s": timed(lambda: sum(o.batch for o in runner.run([one] * 64, copy=False)), seconds)})
    rows += torch_peers(fp32_model, files, seconds)
    return {"rows": rows, "model": Path(model).name, "note": "images/s; device-resident inputs unless said"}


def _vggedge_rates(model: Path, cuda: Any, seconds: float) -> list[dict]:
    """vggedge inference only at b32 and b128: host inputs (with their H2D copy) and inputs already on the GPU."""
    import numpy as np

    from vggedge.runtime.base import RunnerOptions
    from vggedge.runtime.gpu.ort_cuda import OrtCudaRunner

    rows = []
    with OrtCudaRunner(model, RunnerOptions(max_batch=128, slots=3), cuda=cuda) as runner:
        spec = runner.pipeline.inputs[0]
        for b in (32, 128):
            if cuda.cuda_graph and b != 128:
                continue  # a graph is captured at the max batch: smaller batches are padded to it
            feed = np.random.default_rng(b).standard_normal((b, *spec.shape[1:])).astype(spec.dtype)
            count = max(2, 512 // b)
            rows.append({"what": VGG_HOST.format(cuda.cuda_graph), "batch": b,
                         "img_s": timed(lambda: sum(o.batch for o in runner.run([feed] * count, copy=False)), seconds)})
            rows.append({"what": VGG_DEVICE.format(cuda.cuda_graph), "batch": b,
                         "img_s": timed(lambda: sum(o.batch for o in runner.run_on_device([b] * count,
                                                                                           lambda n, slot: n,
                                                                                           copy=False)), seconds)})
    return rows


def torch_peers(fp32_model: Path, files: list[Path], seconds: float) -> list[dict]:
    """PyTorch FP16 channels_last + cudnn.benchmark (inference only) and torchvision GPU decode end to end."""
    try:
        need("torch")
    except SkipSection as skip:
        return [{"what": f"torch peers skipped: {skip}", "batch": 0, "img_s": 0.0}]
    import torch
    import torch.nn.functional as F

    torch.backends.cudnn.benchmark = True
    net = _torch_net(fp32_model)
    rows = []
    for b in (32, 128):
        x = torch.randn(b, 3, 224, 224, device="cuda", dtype=torch.float16).contiguous(memory_format=torch.channels_last)

        def infer() -> int:
            with torch.inference_mode():
                net(x)
            torch.cuda.synchronize()
            return b

        rows.append({"what": TORCH, "batch": b, "img_s": timed(infer, seconds)})
    try:
        from torchvision.io import decode_jpeg
    except ImportError as exc:
        return rows + [{"what": f"torchvision GPU decode skipped ({exc})", "batch": 0, "img_s": 0.0}]
    mean = torch.tensor([123.68, 116.779, 103.939], device="cuda").view(1, 3, 1, 1)
    datas = [torch.frombuffer(bytearray(p.read_bytes()), dtype=torch.uint8) for p in files[:256]]
    state = {"i": 0}

    def e2e(b: int = 32) -> int:
        i = state["i"]
        chunk = [datas[(i + k) % len(datas)] for k in range(b)]
        state["i"] = i + b
        with torch.inference_mode():
            images = decode_jpeg(chunk, device="cuda")
            batch = torch.stack([F.interpolate(im[None].float(), size=(224, 224), mode="bilinear",
                                               align_corners=False)[0] for im in images])
            batch = (batch - mean).half().contiguous(memory_format=torch.channels_last)
            net(batch).float().cpu()
        return b

    rows.append({"what": TORCH_E2E, "batch": 32, "img_s": timed(e2e, seconds)})
    return rows


def _torch_net(fp32_model: Path):
    """VGG16 in torch, FP16 channels_last on the GPU, logits out, weights from the ONNX."""
    import torch

    from torch_peer import torch_vgg16

    net = torch_vgg16(fp32_model, softmax=False)
    return net.to(device="cuda", dtype=torch.float16).to(memory_format=torch.channels_last)
