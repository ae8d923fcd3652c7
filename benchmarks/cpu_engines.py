"""OpenVINO native vs the OpenVINO plugin EP vs plain onnxruntime, at batch 1 and 8, timed round-robin in one run.

    python benchmarks/cpu_engines.py --model engines/bench/vgg16.onnx [--rounds 3] [--seconds 1.5]

The model folder needs the INT8 files beside the FP32 model (``vggedge build
--precision int8``, or benchmarks/peers.py's prepare). Every engine runs the
same preprocessed batch; only inference is timed. Each engine gets one runner
per batch size (hint per batch for OpenVINO native: LATENCY at 1, THROUGHPUT
at 8 with the batch split over its streams; a LATENCY-compiled row at batch 8
is there for comparison). ``b8 as 8x b1`` is what micro-batching to single
images would give. Writes benchmarks/results/cpu-engines-latest.{md,json}.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vggedge.machine import cpu_name  # noqa: E402
from vggedge.preprocess import list_images, preprocess  # noqa: E402
from vggedge.runtime.base import RunnerOptions  # noqa: E402
from vggedge.runtime.cpu import features as cpuf, variants as cpuv  # noqa: E402
from vggedge.runtime.cpu.openvino_native import OpenVinoRunner  # noqa: E402
from vggedge.runtime.select import select_runner  # noqa: E402
from vggedge.spec import load_spec_for  # noqa: E402

BATCHES = (1, 8)
AUTO = 'vggedge precision="auto" (what an app gets: the planner, tuned here)'


def lscpu_model() -> str:
    """``Model name`` from lscpu (the CPU these figures belong to)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return cpu_name()
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")),
                cpu_name())


def ort_plain(path: Path):
    """A default onnxruntime session (what a user writes): one per batch size is not needed."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return {b: (lambda x: sess.run(None, {"images": x})) for b in BATCHES}


def runner_fns(make) -> dict:
    """One active runner per batch size, from ``make(batch)``."""
    out = {}
    for b in BATCHES:
        runner = make(b).activate()
        out[b] = lambda x, r=runner: r.infer({"images": x})
    return out


def auto_runner(fp32: Path, batch: int):
    """The runner an app gets for ``precision="auto"`` at this batch (the tuned winner, micro-batch included)."""
    selection = select_runner(fp32, "auto", precision="auto", options=RunnerOptions(max_batch=batch))
    print(f"auto at batch {batch}: {selection.why}", flush=True)
    return selection.runner


def engines(fp32: Path, features: cpuf.CpuFeatures) -> dict:
    int8 = cpuv.variant_path(fp32, "tensorrt")
    rows = {AUTO: lambda: runner_fns(lambda b: auto_runner(fp32, b)),
            "onnxruntime FP32, default session": lambda: ort_plain(fp32),
            "onnxruntime INT8 (TensorRT-style file), default session": lambda: ort_plain(int8)}
    for variant in cpuv.variants_for(features):
        rows[f"vggedge {variant.key}: {variant.label}"] = (
            lambda v=variant: runner_fns(lambda b: cpuv.runner_for(v, fp32, RunnerOptions(max_batch=b))))
    if features.openvino_native:
        rows["OpenVINO native INT8, LATENCY hint at every batch"] = lambda: runner_fns(
            lambda b: OpenVinoRunner(int8, RunnerOptions(max_batch=1)))
    return rows


def measure(rows: dict, inputs: dict, rounds: int, seconds: float) -> dict:
    """Median seconds per call of every engine and batch, timed round-robin over ``rounds``.

    Each round starts at a different engine (the order rotated by ``round * engines // rounds``): with a
    fixed order the first engine of every round measured 1-3% slower than the same runner placed later
    (2026-12-06, AMD EPYC Zen 4), which read as app-path overhead of ``auto``.
    """
    fns, results = {}, {}
    for name, factory in rows.items():
        try:
            fns[name] = factory()
            for b, x in inputs.items():
                fns[name][b](x)  # warm-up (compile, first allocation)
        except Exception as exc:  # an engine that cannot run here is a row saying why
            results[name] = {"error": f"{type(exc).__name__}: {exc}"[:200]}
            print(f"{name}: not run ({exc})", flush=True)
    samples = {(n, b): [] for n in fns for b in inputs}
    names = list(fns)
    for r in range(rounds):
        shift = r * len(names) // max(1, rounds)
        for name in names[shift:] + names[:shift]:
            fn = fns[name]
            for b, x in inputs.items():
                start = time.perf_counter()
                while not samples[name, b] or time.perf_counter() - start < seconds:
                    t0 = time.perf_counter()
                    fn[b](x)
                    samples[name, b].append(time.perf_counter() - t0)
    for name in fns:
        med = {b: float(np.median(samples[name, b])) for b in inputs}
        results[name] = {"b1_ms": 1000 * med[1], "b1_img_s": 1 / med[1], "b8_img_s": 8 / med[8],
                         "b8_as_8x_b1_img_s": 1 / med[1]}
        print(f"{name}: b1 {1000 * med[1]:.1f} ms, b8 {8 / med[8]:.1f} img/s", flush=True)
    return results


def acceptance(results: dict) -> str:
    """The issue's targets: auto against the fastest other row, at batch 1 and at batch 8 (higher is better)."""
    if "error" in results.get(AUTO, {"error": "missing"}):
        return "auto path: not run"
    others = {n: r for n, r in results.items() if n != AUTO and "error" not in r}
    best1 = max(others, key=lambda n: others[n]["b1_img_s"])
    best8 = max(others, key=lambda n: others[n]["b8_img_s"])
    auto = results[AUTO]
    r1, r8 = auto["b1_img_s"] / others[best1]["b1_img_s"], auto["b8_img_s"] / others[best8]["b8_img_s"]
    return (f"auto / fastest at batch 1: **{r1:.2f}x** (fastest: {best1}; target >= 0.95x); "
            f"auto / fastest at batch 8: **{r8:.2f}x** (fastest: {best8}; target >= 1.0x).")


def table(results: dict) -> str:
    lines = ["| engine | batch 1 (ms) | batch 1 (img/s) | batch 8 (img/s) | b8 as 8x b1 (img/s) |",
             "|---|---|---|---|---|"]
    for name, r in results.items():
        if "error" in r:
            lines.append(f"| {name} | not run: {r['error']} | | | |")
        else:
            lines.append(f"| {name} | {r['b1_ms']:.1f} | {r['b1_img_s']:.1f} | {r['b8_img_s']:.1f} | "
                         f"{r['b8_as_8x_b1_img_s']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="FP32 vgg16.onnx with its INT8 files beside it")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=1.5, help="timed seconds per engine, batch and round")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    fp32 = Path(args.model)
    spec = load_spec_for(fp32)
    photos = list_images(ROOT / "calib")
    inputs = {b: preprocess([photos[i % len(photos)] for i in range(b)], spec) for b in BATCHES}
    features = cpuf.cpu_features()
    results = measure(engines(fp32, features), inputs, args.rounds, args.seconds)
    cpu = lscpu_model()
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    md = [f"# CPU engines side by side, {stamp}", "",
          f"CPU: {cpu} ({features.cores} cores; {features.isa}). Round-robin, each round starting at another "
          f"engine, {args.rounds} rounds of {args.seconds:g} s per engine and batch; medians; inference only.", "",
          table(results), "",
          acceptance(results), "",
          f"Reproduce: `.venv/bin/python benchmarks/cpu_engines.py --model {fp32} --rounds {args.rounds}`"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cpu-engines-latest.md").write_text("\n".join(md) + "\n")
    (out / "cpu-engines-latest.json").write_text(json.dumps({"cpu": cpu, "isa": features.isa, "date": stamp,
                                                             "results": results}, indent=1))
    print("\n".join(md))


if __name__ == "__main__":
    main()
