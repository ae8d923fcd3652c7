"""The stream pipeline against inference alone, measured side by side in one run.

    python benchmarks/stream_bench.py [--model M.onnx] [--batch 8] [--duration 10] [--out benchmarks/results]

1. Throughput: a 1920x1080 video (the calib/ photos, written here with OpenCV)
   through ``vggedge.stream`` (decode, resize, batching, inference, results) at
   batch B, against ``runner.infer`` on an already preprocessed batch of B on the
   same backend and precision. The claim to check: the pipeline's classified
   frames/s within 10% of inference only (capture, decode and preprocessing
   hidden behind inference). Stream runs alternate with inference-only runs
   (I S I S I ...); each stream run is compared with the mean of its two
   neighbours, and the median of those ratios is reported, so load changes on a
   shared machine show up instead of deciding the result. Each stream run also
   reports its frames/s over its own median inference pace (``hidden_share``),
   which a load change cannot skew.
2. Latency: the same video paced as a live camera faster than the model (batch 1);
   the claim: end-to-end p95 (capture to result) under two inference times.

Writes stream-latest.json and stream-latest.md under --out.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vggedge.apps.demo import DEFAULT_OUT, prepare_model  # noqa: E402
from vggedge.apps.info import cpu_name  # noqa: E402
from vggedge.apps.stream import stream  # noqa: E402
from vggedge.paths import CALIB_DIR  # noqa: E402
from vggedge.preprocess import list_images, preprocess  # noqa: E402
from vggedge.runtime.base import RunnerOptions  # noqa: E402
from vggedge.runtime.select import select_runner  # noqa: E402
from vggedge.spec import load_spec_for  # noqa: E402


def write_video(path: Path, frames: int, fps: float, size=(1920, 1080)) -> Path:
    """``frames`` frames cycling through the calib/ photos at ``size`` (MJPEG AVI, as a camera would send)."""
    import cv2

    photos = [cv2.resize(cv2.imread(str(p)), size, interpolation=cv2.INTER_AREA) for p in list_images(CALIB_DIR)]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    for i in range(frames):
        writer.write(photos[(i // 5) % len(photos)])
    writer.release()
    return path


def inference_only(model: Path, backend: str, precision: str, batch: int, seconds: float) -> dict:
    """Images/s and median batch time of ``runner.infer`` on one preprocessed batch, repeated."""
    spec = load_spec_for(model)
    images = list_images(CALIB_DIR)[:batch]
    images = (images * batch)[:batch]
    sel = select_runner(model, backend, options=RunnerOptions(max_batch=batch), precision=precision)
    with sel.runner as runner:
        feed = {spec.input_name: preprocess(images, spec)}
        for _ in range(2):
            runner.infer(feed)
        times, start = [], time.perf_counter()
        while time.perf_counter() - start < seconds or len(times) < 5:
            t0 = time.perf_counter()
            runner.infer(feed)
            times.append(time.perf_counter() - t0)
        desc = runner.describe()
    return {"images_per_s": batch * len(times) / sum(times), "median_ms": 1000 * float(np.median(times)),
            "batches": len(times), "runner": desc, "backend": sel.backend}


def stream_throughput(model: Path, clip: Path, backend: str, precision: str, batch: int) -> dict:
    """Classified frames/s of the whole pipeline on a file (every frame), the first batch excluded as warm-up."""
    run = stream([str(clip)], model, backend=backend, precision=precision, batch_size=batch)
    stamps = [time.perf_counter() for _ in run]
    summary = run.summary()
    timed = stamps[batch - 1:]  # from the end of the first (warm-up) batch: the frames of the later batches
    fps = (len(timed) - 1) / (timed[-1] - timed[0])
    infer_fps = batch / (summary["latency_ms"]["infer"]["p50"] / 1000.0)  # the model's own pace in this run
    return {"frames_per_s": fps, "hidden_share": fps / infer_fps, "classified": summary["classified"],
            "batches": summary["batches"], "latency_ms": summary["latency_ms"]}


def live_latency(model: Path, clip: Path, backend: str, precision: str) -> dict:
    """End-to-end latency of a paced (live) source faster than the model, batch 1."""
    run = stream([str(clip)], model, backend=backend, precision=precision, batch_size=1, pace=True)
    results = list(run)
    summary = run.summary()
    source_fps = summary["frames"] / summary["seconds"]
    e2e = np.array([r.latency_s for r in results[3:] or results]) * 1000  # the first few warm up
    infer = np.array(list(run.stats.latency["infer"])[3:] or list(run.stats.latency["infer"])) * 1000
    return {"e2e_p50_ms": float(np.percentile(e2e, 50)), "e2e_p95_ms": float(np.percentile(e2e, 95)),
            "infer_median_ms": float(np.median(infer)), "classified": summary["classified"],
            "frames": summary["frames"], "dropped": summary["dropped"], "source_fps_achieved": source_fps}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="ONNX model with spec (default: the demo model)")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="stream runs, each between two inference-only runs")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    model = Path(args.model) if args.model else prepare_model(None, DEFAULT_OUT)[0]
    with tempfile.TemporaryDirectory() as tmp:
        infer = [inference_only(model, args.backend, args.precision, args.batch, args.duration)]
        frames = max(6 * args.batch, int(infer[0]["images_per_s"] * args.duration))
        clip = write_video(Path(tmp) / "1080p.avi", frames, 30.0)
        piped = []
        for _ in range(args.rounds):  # I S I S I ...: each stream run between two inference-only runs
            piped.append(stream_throughput(model, clip, args.backend, args.precision, args.batch))
            infer.append(inference_only(model, args.backend, args.precision, args.batch, args.duration))
        one = inference_only(model, args.backend, args.precision, 1, args.duration / 2)
        live_fps = max(30.0, 2.0 * one["images_per_s"])  # a camera faster than the model
        live_clip = write_video(Path(tmp) / "live.avi", max(30, int(live_fps * args.duration)), live_fps,
                                 (640, 480))
        live = live_latency(model, live_clip, args.backend, args.precision)
    ratios = [p["frames_per_s"] / ((a["images_per_s"] + b["images_per_s"]) / 2)
              for p, a, b in zip(piped, infer, infer[1:])]
    report = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "cpu": cpu_name(),
        "machine": platform.machine(), "model": str(model), "backend": infer[0]["backend"],
        "runner": infer[0]["runner"], "batch": args.batch, "video": "1920x1080 MJPEG AVI",
        "inference_only": infer, "stream": piped, "ratios": ratios,
        "throughput_ratio": float(np.median(ratios)),
        "live": {**live, "camera_fps": live_fps, "batch1_infer_only_ms": one["median_ms"],
                 "p95_over_infer": live["e2e_p95_ms"] / live["infer_median_ms"]},
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "stream-latest.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "stream-latest.md").write_text(markdown(report))
    print(markdown(report))
    return report


def markdown(r: dict) -> str:
    live = r["live"]
    return "\n".join([
        f"# Stream pipeline vs inference only ({r['date']})", "",
        f"CPU: {r['cpu']} ({r['machine']}); backend {r['backend']} ({r['runner']}); batch {r['batch']}; "
        f"source: {r['video']}.", "",
        "| measurement | frames/s | stream / mean of neighbours |", "|---|---:|---:|",
        *[row for i, p in enumerate(r["stream"]) for row in (
            f"| inference only | {r['inference_only'][i]['images_per_s']:.1f} | |",
            f"| stream pipeline (decode + preprocess + infer + results) | {p['frames_per_s']:.1f} | "
            f"{r['ratios'][i]:.2f} |")],
        f"| inference only | {r['inference_only'][-1]['images_per_s']:.1f} | |", "",
        f"Median ratio: {r['throughput_ratio']:.2f} (the claim: at least 0.90).", "",
        "Within each stream run, classified frames/s over batch / median inference time of that same run "
        "(1.0: capture, decode and preprocessing fully hidden behind inference): "
        + ", ".join(f"{p['hidden_share']:.2f}" for p in r["stream"]) + ".", "",
        f"Live 640x480 source paced at {live['camera_fps']:.0f} fps ({live['source_fps_achieved']:.0f} fps read; "
        f"faster than the model), batch 1: end-to-end p50 "
        f"{live['e2e_p50_ms']:.1f} ms, p95 {live['e2e_p95_ms']:.1f} ms; inference median {live['infer_median_ms']:.1f} "
        f"ms in the stream ({live['batch1_infer_only_ms']:.1f} ms alone); p95 / inference = "
        f"{live['p95_over_infer']:.2f}; {live['dropped']} of {live['frames']} frames dropped (latest-frame policy).",
        "",
    ])


if __name__ == "__main__":
    main()
