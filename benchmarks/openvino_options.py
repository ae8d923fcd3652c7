"""Which OpenVINO CPU settings suit vggedge's synchronous batches, measured on this machine.

    python benchmarks/openvino_options.py [--models engines/bench] [--seconds 3]

Times the OpenVINO CPU plugin (the same OpenVINO the onnxruntime plugin EP
bundles, driven natively through the ``openvino`` package so it runs on any x86
CPU) on the INT8 Q/DQ file and the FP32 file, for each performance hint /
threads / streams / precision setting, at batch 1 and 8, one request at a time
as vggedge's runner does. The settings are the properties
``OpenVinoOptions.properties()`` hands the plugin EP. Writes
benchmarks/results/openvino-options.{md,json}.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vggedge.machine import cpu_name  # noqa: E402
from vggedge.runtime.cpu.variants import variant_path  # noqa: E402
from vggedge.runtime.cpu.openvino_ep import OpenVinoOptions  # noqa: E402

SETTINGS = {
    "LATENCY (default threads/streams)": OpenVinoOptions("LATENCY"),
    "THROUGHPUT (default streams)": OpenVinoOptions("THROUGHPUT"),
    "LATENCY, 1 thread": OpenVinoOptions("LATENCY", threads=1),
    "THROUGHPUT, 1 stream": OpenVinoOptions("THROUGHPUT", streams=1),
    "LATENCY, 2 streams": OpenVinoOptions("LATENCY", streams=2),
}


def interleaved(requests: dict, inputs: dict[int, np.ndarray], seconds: float, rounds: int = 4) -> dict:
    """Median seconds per (setting, batch), measured round-robin so that load from other jobs on a
    shared machine falls on every setting alike."""
    samples: dict = {(name, b): [] for name in requests for b in inputs}
    for request in requests.values():
        for x in inputs.values():
            request.infer({0: x})  # warm-up
    for _ in range(rounds):
        for name, request in requests.items():
            for batch, x in inputs.items():
                start = time.perf_counter()
                while len(samples[name, batch]) < 1 or time.perf_counter() - start < seconds / rounds:
                    t0 = time.perf_counter()
                    request.infer({0: x})
                    samples[name, batch].append(time.perf_counter() - t0)
    return {key: float(np.median(v)) for key, v in samples.items()}


def main() -> None:
    import openvino as ov

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=str(ROOT / "engines" / "bench"))
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    fp32 = Path(args.models) / "vgg16.onnx"
    files = {"INT8 Q/DQ": (variant_path(fp32, "tensorrt"), None), "FP32 file, bf16 hint": (fp32, "bf16"),
             "FP32 file, f32": (fp32, "f32")}
    core, rows = ov.Core(), []
    inputs = {b: np.random.default_rng(0).uniform(-100, 100, (b, 3, 224, 224)).astype(np.float32) for b in (1, 8)}
    for file_label, (path, precision) in files.items():
        options = {label: OpenVinoOptions(base.performance_hint, precision, base.threads, base.streams)
                   for label, base in SETTINGS.items()}
        requests = {label: core.compile_model(str(path), "CPU", o.properties()).create_infer_request()
                    for label, o in options.items()}
        medians = interleaved(requests, inputs, args.seconds)
        for label, opts in options.items():
            row = {"file": file_label, "setting": label, "properties": opts.properties(),
                   "b1_ms": 1000 * medians[label, 1], "b8_ms": 1000 * medians[label, 8]}
            print(f"{file_label:<22} {label:<36} b1 {row['b1_ms']:8.1f} ms   b8 {8000 / row['b8_ms']:6.1f} img/s",
                  flush=True)
            rows.append(row)
        del requests
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    md = [f"# OpenVINO CPU settings for vggedge, {stamp}", "",
          f"Machine: {cpu_name()}, {os.cpu_count()} cores (shared with other jobs while measured: "
          "compare rows with each other, not with other runs). OpenVINO " + ov.__version__ + ", synchronous "
          "requests (one at a time, as vggedge's runner issues them), settings timed round-robin, medians.", "",
          "| file | setting | batch 1 (ms) | batch 8 (img/s) |", "|---|---|---|---|"]
    md += [f"| {r['file']} | {r['setting']} | {r['b1_ms']:.1f} | {8000 / r['b8_ms']:.1f} |" for r in rows]
    md += ["", "Best here, per file:"]
    for file_label in files:
        mine = [r for r in rows if r["file"] == file_label]
        b1, b8 = min(mine, key=lambda r: r["b1_ms"]), min(mine, key=lambda r: r["b8_ms"])
        md.append(f"- {file_label}: batch 1 {b1['setting']}; batch 8 {b8['setting']}")
    md += ["", "vggedge gives the plugin EP `PERFORMANCE_HINT=LATENCY` and leaves threads and streams to "
           "OpenVINO (`OpenVinoOptions()`); `--threads` / `RunnerOptions.threads` sets INFERENCE_NUM_THREADS."]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "openvino-options.md").write_text("\n".join(md) + "\n")
    (out / "openvino-options.json").write_text(json.dumps({"cpu": cpu_name(), "date": stamp, "rows": rows},
                                                          indent=1))
    print("\n".join(md))


if __name__ == "__main__":
    main()
