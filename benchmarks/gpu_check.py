"""The one GPU check: everything vggedge's GPU path should do, run once on a GPU machine.

    python3 benchmarks/gpu_check.py --out $OUT [--batches 1,8,32] [--budget-s 240] [--quick]

``benchmarks/gpu_check.sh`` installs pycuda (and onnxruntime-gpu) first, runs
``pytest -m gpu``, then this. Each section is recorded as ok / failed / skipped
with its reason and never stops the others:

- ``environment``: GPU, driver, packages, whether TensorRT is there;
- ``kernel``: the CUDA preprocessing kernel against OpenCV (``vggedge.preprocess.prepare``);
- ``parity``: ort-cuda (default options: NHWC convolutions, TF32 off) against ort-cpu on the
  *logits* of the calib/ photos (never saturated softmax): max error relative to the largest
  logit <= 1e-3 for FP32, <= 5e-2 for FP16 (both reported, with top-1 agreement);
- ``noise``: lines a default-verbosity FP16 session and a GPU decode of bad files print (none allowed);
- ``decode``: nvImageCodec against the CPU decoder (pixel differences, top-1 of the two decode paths);
- ``item6``: no CUDA context current after ``deactivate()``, onnxruntime on our stream
  (``has_user_compute_stream``), and slot event timestamps showing copies overlapping compute;
- ``overlap``: overlapped ``run()`` against blocking ``infer()`` per batch size;
- ``jobs``: each job end to end (bench --end-to-end, batch, classify) on distinct 1080p JPEGs,
  with GPU and with CPU decoding;
- ``peers``: raw onnxruntime-gpu with the same options, vggedge inference only (host and device
  inputs, with and without CUDA graphs), batch 1 blocking vs overlapped, torch FP16 channels_last
  + cudnn.benchmark, torch + torchvision GPU decode end to end. The issue's targets are computed
  from ``jobs`` and ``peers`` (``targets`` in the summary).

Writes ``gpu_check.json`` and ``gpu_check.md`` under ``--out``. The pure parts
(arguments, overlap from event timestamps, summary writing) are in
``gpu_check_report.py``, tested on CPUs in ``tests/benchmarks/test_gpu_check.py``.
"""
from __future__ import annotations

import datetime as dt
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_check_report import (SECTIONS, Interval, SkipSection, overlap_report, parse_args,  # noqa: E402
                              render_markdown, run_section, targets, write_summary)

ROOT = Path(__file__).resolve().parents[1]
PARITY_REL = 1e-3


# ------------------------------------------------------------------------------------------ GPU parts
def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip() or "?"
    except Exception:
        return "?"


def environment() -> dict:
    """GPU, driver, package versions, TensorRT presence."""
    from vggedge.apps.info import versions

    out: dict[str, Any] = {"python": platform.python_version(), "packages": versions()}
    if shutil.which("nvidia-smi"):
        query = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=30).stdout.strip().splitlines()
        if query:
            name, driver, memory = (p.strip() for p in query[0].split(","))
            out.update(gpu=name, driver=driver, memory=memory)
    try:
        import tensorrt

        out["tensorrt"] = str(tensorrt.__version__)
    except Exception as exc:
        out["tensorrt"] = f"absent ({type(exc).__name__}: {exc})"
    ldconfig = subprocess.run(["sh", "-c", "ldconfig -p | grep -c nvinfer || true"], capture_output=True, text=True)
    out["libnvinfer_entries"] = ldconfig.stdout.strip()
    try:
        import onnxruntime as ort

        out["onnxruntime_providers"] = ort.get_available_providers()
    except Exception as exc:
        out["onnxruntime_providers"] = f"error: {exc}"
    from vggedge.runtime.gpu.cuda import cuda_available

    out["cuda_available"] = cuda_available() or "yes"
    return out


def _need_cuda() -> None:
    from vggedge.runtime.gpu.cuda import cuda_available

    reason = cuda_available()
    if reason:
        raise SkipSection(reason)


def _need_ort_cuda() -> None:
    _need_cuda()
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise SkipSection(f"onnxruntime {ort.__version__} has no CUDAExecutionProvider (onnxruntime-gpu not installed)")


def _fatbin() -> Path:
    from vggedge.runtime.gpu.gpu_preprocess import default_fatbin

    path = default_fatbin()
    if path.is_file():
        return path
    if not shutil.which("cmake") or not shutil.which("nvcc"):
        raise SkipSection("kernels not built and cmake/nvcc missing")
    build = Path(os.environ.get("TMPDIR", "/tmp")) / "vggedge-kernels"
    subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build)], check=True, capture_output=True, timeout=120)
    subprocess.run(["cmake", "--build", str(build), "-j"], check=True, capture_output=True, timeout=300)
    return build / "kernels" / "preprocess.fatbin"


def kernel_check(quick: bool) -> dict:
    """Max pixel difference of the CUDA kernel against OpenCV on calib/ photos and synthetic frames."""
    _need_cuda()
    import cv2
    import numpy as np

    from vggedge.preprocess import list_images, prepare
    from vggedge.runtime.gpu import cuda as vcuda
    from vggedge.runtime.gpu.gpu_preprocess import GpuPreprocessor, reference
    from vggedge.spec import CAFFE_RGB, RAW_PIXELS, TORCHVISION, ModelSpec

    fatbin = _fatbin()
    frames = [cv2.imread(str(p)) for p in list_images(ROOT / "calib")[: 3 if quick else 12]]
    rng = np.random.default_rng(0)
    frames += [rng.integers(0, 256, shape, dtype=np.uint8) for shape in ((1080, 1920, 3), (100, 150, 3))]
    rows = []
    ctx = vcuda.CudaContext(0).open()
    for label, spec, tol in (("raw fp32", ModelSpec(preprocessing=RAW_PIXELS), 1.0),
                             ("caffe fp32", ModelSpec(preprocessing=CAFFE_RGB), 1.0),
                             ("caffe fp16", ModelSpec(preprocessing=CAFFE_RGB, dtype="float16"), 1.25),
                             ("torchvision crop fp16 NHWC", ModelSpec(preprocessing=TORCHVISION, dtype="float16",
                                                                      layout="NHWC"), 1.25)):
        worst = mean = twin = 0.0
        pre = spec.preprocessing
        std = np.asarray(pre.std, np.float32)
        gain, offset = pre.scale / std, np.asarray(pre.mean, np.float32) / std

        def pixels(t):
            return ((t if spec.layout == "NHWC" else t.transpose(1, 2, 0)).astype(np.float32) + offset) / gain

        with ctx, GpuPreprocessor(spec, fatbin=fatbin, ctx=ctx) as gpu, vcuda.CudaStream() as stream, \
                vcuda.DeviceBuffer(gpu.image_bytes) as out, \
                vcuda.PinnedBuffer(spec.input_shape[1:], np.dtype(spec.dtype)) as host:
            for frame in frames:
                gpu(frame, out.ptr, stream)
                out.download_async(host.array, stream)
                stream.synchronize()
                diff = np.abs(pixels(host.array) - pixels(prepare(frame, spec)))
                worst, mean = max(worst, float(diff.max())), max(mean, float(diff.mean()))
                twin = max(twin, float(np.abs(pixels(host.array) - pixels(reference(frame, spec))).max()))
        rows.append({"preprocessing": label, "frames": len(frames), "max_pixel_diff": worst,
                     "worst_mean_pixel_diff": mean, "max_diff_to_numpy_twin": twin, "tolerance": tol,
                     "passed": worst <= tol})
    return {"rows": rows, "passed": all(r["passed"] for r in rows)}


class Models:
    """FP32 (and FP16 where onnxconverter-common is installed) full-size VGG16 with random weights, made once.

    ``logits(precision)``: the same weights without the final softmax, for parity that can fail.
    """

    def __init__(self, folder: Path) -> None:
        self.folder, self._fp32, self._fp16, self._logits = folder, None, None, {}

    def logits(self, precision: str = "fp32") -> Path | None:
        if precision not in self._logits:
            from vggedge.model.export import export_vgg16
            from vggedge.model.vgg16 import VGG16Options

            if "fp32" not in self._logits:
                options = VGG16Options(include_rescaling=False, include_top=True, num_classes=1000,
                                       classifier_activation=None)
                self._logits["fp32"] = export_vgg16("random:0", self.folder / "logits" / "vgg16.onnx",
                                                    options).onnx_path
            if precision == "fp16":
                try:
                    from vggedge.precision.fp16 import write_fp16

                    self._logits["fp16"] = write_fp16(self._logits["fp32"])
                except ImportError:
                    self._logits["fp16"] = None
        return self._logits[precision]

    def fp32(self) -> Path:
        if self._fp32 is None:
            from vggedge.model.export import export_vgg16

            self._fp32 = export_vgg16("random:0", self.folder / "vgg16.onnx").onnx_path
        return self._fp32

    def fp16(self) -> Path | None:
        if self._fp16 is None:
            try:
                from vggedge.precision.fp16 import write_fp16

                self._fp16 = write_fp16(self.fp32())
            except ImportError as exc:
                print(f"gpu_check: no FP16 model ({exc}); vggedge timings use FP32", flush=True)
                return None
        return self._fp16


CUDA_OPTIONS = {"use_tf32": "0", "cudnn_conv_algo_search": "HEURISTIC"}
PARITY_FP16_REL = 5e-2


def parity_check(models: Models) -> dict:
    """ort-cuda (default CudaOptions, TF32 off) against ort-cpu on the logits of the calib/ photos."""
    _need_ort_cuda()
    import numpy as np

    from vggedge.preprocess import list_images, preprocess
    from vggedge.runtime.base import RunnerOptions
    from vggedge.runtime.gpu.ort_cuda import OrtCudaRunner
    from vggedge.runtime.ort import OrtRunner
    from vggedge.spec import load_spec_for

    fp32 = models.logits("fp32")
    spec = load_spec_for(fp32)
    x = preprocess(list_images(ROOT / "calib")[:8], spec)
    with OrtRunner(fp32) as cpu:
        want = cpu.infer({spec.input_name: x})[spec.output_name]
    rows = []
    for precision, tol in (("fp32", PARITY_REL), ("fp16", PARITY_FP16_REL)):
        model = models.logits(precision)
        if model is None:
            continue
        mspec = load_spec_for(model)
        with OrtCudaRunner(model, RunnerOptions(max_batch=len(x)), provider_options={"use_tf32": "0"}) as gpu:
            got = gpu.infer({mspec.input_name: x.astype(mspec.dtype)})[mspec.output_name].astype(np.float32)
            options = gpu.session.get_provider_options()["CUDAExecutionProvider"]
        rel = float(np.abs(got - want).max() / np.abs(want).max())
        rows.append({"precision": precision, "max_rel_logit_error": rel, "tolerance": tol,
                     "top1_agreement": float((got.argmax(1) == want.argmax(1)).mean()),
                     "logit_range": float(np.abs(want).max()), "prefer_nhwc": options.get("prefer_nhwc"),
                     "passed": rel <= tol})
    return {"rows": rows, "note": "logits (no softmax) of 8 calib/ photos, ort-cuda vs ort-cpu FP32",
            "passed": bool(rows) and all(r["passed"] for r in rows)}


def _timeline(runner: Any, batches: list) -> list[dict[str, Interval]]:
    """Run ``batches`` through ``runner.run`` and read each slot's events against one reference event (ms)."""
    from vggedge.runtime.gpu import cuda as vcuda

    pipeline = runner.pipeline
    with runner.ctx:
        ref = vcuda.CudaEvent()
        ref.record(pipeline.slots[0].stream)
        ref.synchronize()
    original, timeline = pipeline.collect, []

    def collect(slot: int):
        result = original(slot)
        s = pipeline.slots[slot]
        ev, st = s.events, s.state
        with runner.ctx:
            at = {name: e.elapsed_ms(ref) for name, e in ev.items()}
            start = st["started"].elapsed_ms(ref) if "started" in st else at["h2d_end"]
            end = st["done"].elapsed_ms(ref) if "done" in st else at["compute_end"]
        timeline.append({"h2d": (at["h2d_start"], at["h2d_end"]), "compute": (start, end),
                         "d2h": (at["compute_end"], at["d2h_end"])})
        return result

    pipeline.collect = collect
    try:
        for _ in runner.run(batches):
            pass
    finally:
        pipeline.collect = original
    return timeline


def item6_check(models: Models) -> dict:
    """Item 6 on hardware: no context left current, onnxruntime on our stream, copies overlapping compute."""
    _need_ort_cuda()
    import numpy as np

    from vggedge.runtime.base import RunnerOptions
    from vggedge.runtime.gpu import cuda as vcuda
    from vggedge.runtime.gpu.ort_cuda import OrtCudaRunner

    model = models.fp16() or models.fp32()
    before = vcuda.current_context() is None
    driver_before = vcuda.driver_current_context()
    x = np.random.default_rng(3).standard_normal((8, 3, 224, 224)).astype(np.float32)
    with OrtCudaRunner(model, RunnerOptions(max_batch=8, slots=3), provider_options=CUDA_OPTIONS) as runner:
        options = runner.session.get_provider_options()["CUDAExecutionProvider"]
        on_our_stream = (options.get("has_user_compute_stream") == "1"
                         and options.get("user_compute_stream") == str(runner._compute.handle))
        runner.infer({"images": x})  # warm-up
        timeline = _timeline(runner, [x] * 12)
    after = vcuda.current_context() is None
    driver_after = vcuda.driver_current_context()
    report = overlap_report(timeline[2:])  # the first batches fill the pipeline
    passed = before and after and on_our_stream and report["copies_overlap_compute"]
    return {"no_context_current_before": before, "no_context_current_after_deactivate": after,
            "onnxruntime_on_our_stream": on_our_stream, "provider_stream_options":
            {k: options.get(k) for k in ("has_user_compute_stream", "user_compute_stream")},
            "driver_current_context_before_after": [hex(driver_before), hex(driver_after)],
            "overlap": report, "model": model.name, "passed": passed}


def _rate(fn: Callable[[], int], min_seconds: float, warmup: int = 1) -> float:
    """Images per second of ``fn`` (which returns the images it did), repeated for at least ``min_seconds``."""
    for _ in range(warmup):
        fn()
    images, t0 = 0, time.perf_counter()
    while True:
        images += fn()
        elapsed = time.perf_counter() - t0
        if elapsed >= min_seconds:
            return images / elapsed


def overlap_check(models: Models, batches: Sequence[int], quick: bool) -> dict:
    """Overlapped run() (3 slots) against blocking infer(), inference with copies, per batch size."""
    _need_ort_cuda()
    import numpy as np

    from vggedge.runtime.base import RunnerOptions
    from vggedge.runtime.gpu.ort_cuda import OrtCudaRunner

    model = models.fp16() or models.fp32()
    rows, seconds = [], 0.5 if quick else 2.0
    with OrtCudaRunner(model, RunnerOptions(max_batch=max(batches), slots=3), provider_options=CUDA_OPTIONS) as r:
        for n in batches:
            x = np.random.default_rng(n).standard_normal((n, 3, 224, 224)).astype(np.float32)
            count = max(4, 64 // n)
            blocking = _rate(lambda: sum(len(r.infer({"images": x})["predictions"]) for _ in range(count)), seconds)
            overlapped = _rate(lambda: sum(out.batch for out in r.run([x] * count)), seconds)
            rows.append({"batch": n, "blocking_img_s": blocking, "overlapped_img_s": overlapped,
                         "ratio": overlapped / blocking})
    return {"rows": rows, "model": model.name, "note": "ort-cuda, H2D + compute + D2H, images/s"}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(ROOT))
    start, deadline = time.monotonic(), time.monotonic() + args.budget_s
    models = Models(Path(os.environ.get("TMPDIR", "/tmp")) / "vggedge-gpu-check")
    models.folder.mkdir(parents=True, exist_ok=True)
    import gpu_check_jobs as jobs
    from vggedge.preprocess import list_images

    files: list[Path] = []

    def jpegs() -> list[Path]:
        if not files:
            files.extend(jobs.make_jpegs(models.folder / "jpegs", 512 if args.quick else args.files))
        return files

    photos = [p for p in list_images(ROOT / "eval") + list_images(ROOT / "calib") if p.suffix.lower() == ".jpg"]
    plan: dict[str, Callable[[], dict]] = {
        "environment": environment, "kernel": lambda: kernel_check(args.quick),
        "parity": lambda: parity_check(models), "item6": lambda: item6_check(models),
        # each checks what it needs before the models (minutes on a CPU) and files are made
        "noise": lambda: jobs.need("ort") or jobs.noise_check(models.fp16() or models.fp32()),
        "decode": lambda: jobs.need("nvimgcodec") or jobs.decode_check(models.logits("fp32"), photos),
        "overlap": lambda: overlap_check(models, args.batches, args.quick),
        "jobs": lambda: jobs.need("ort") or jobs.jobs_check(models.fp16() or models.fp32(), jpegs(), args.quick),
        "peers": lambda: jobs.need("ort") or jobs.peers_check(models.fp16() or models.fp32(), models.fp32(), jpegs(),
                                                              args.quick)}
    summary: dict[str, Any] = {"started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                               "commit": _commit(), "args": vars(args), "sections": {}}
    for name in SECTIONS:
        if name not in args.sections:
            continue
        print(f"gpu_check: {name} ...", flush=True)
        summary["sections"][name] = run_section(name, plan[name], deadline)
        print(f"gpu_check: {name} {summary['sections'][name]['status']}", flush=True)
        summary["seconds"] = time.monotonic() - start
        rows = {n: summary["sections"].get(n, {}).get("result", {}).get("rows", []) for n in ("jobs", "peers")}
        summary["targets"] = targets(rows["jobs"], rows["peers"])
        write_summary(summary, args.out)  # after every section: a killed run still leaves its results
    failed = [n for n, s in summary["sections"].items() if s["status"] == "failed"]
    print(render_markdown(summary), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
