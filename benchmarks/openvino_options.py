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

from vggedge.runtime.cpu import cpu_model_name, variant_path  # noqa: E402
from vggedge.runtime.openvino_ep import OpenVinoOptions  # noqa: E402

SETTINGS = {
    "LATENCY (default threads/streams)": OpenVinoOptions("LATENCY"),
    "THROUGHPUT (default streams)": OpenVinoOptions("THROUGHPUT"),
    "LATENCY, 1 thread": OpenVinoOptions("LATENCY", threads=1),
    "THROUGHPUT, 1 stream": OpenVinoOptions("THROUGHPUT", streams=1),
    "LATENCY, 2 streams": OpenVinoOptions("LATENCY", streams=2),
}


def median_seconds(request, x: np.ndarray, seconds: float) -> float:
    request.infer({0: x})  # warm-up
    samples, start = [], time.perf_counter()
    while len(samples) < 3 or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        request.infer({0: x})
        samples.append(time.perf_counter() - t0)
    return float(np.median(samples))


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
    for file_label, (path, precision) in files.items():
        for label, base in SETTINGS.items():
            opts = OpenVinoOptions(base.performance_hint, precision, base.threads, base.streams)
            request = core.compile_model(str(path), "CPU", opts.properties()).create_infer_request()
            row = {"file": file_label, "setting": label, "properties": opts.properties()}
            for batch in (1, 8):
                x = np.random.default_rng(0).uniform(-100, 100, (batch, 3, 224, 224)).astype(np.float32)
                row[f"b{batch}_ms"] = 1000 * median_seconds(request, x, args.seconds)
            print(f"{file_label:<22} {label:<36} b1 {row['b1_ms']:8.1f} ms   b8 {8000 / row['b8_ms']:6.1f} img/s",
                  flush=True)
            rows.append(row)
            del request
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    md = [f"# OpenVINO CPU settings for vggedge, {stamp}", "",
          f"Machine: {cpu_model_name()}, {os.cpu_count()} cores (shared with other jobs while measured: "
          "compare rows with each other, not with other runs). OpenVINO " + ov.__version__ + ", synchronous "
          "requests (one at a time, as vggedge's runner issues them), medians.", "",
          "| file | setting | batch 1 (ms) | batch 8 (img/s) |", "|---|---|---|---|"]
    md += [f"| {r['file']} | {r['setting']} | {r['b1_ms']:.1f} | {8000 / r['b8_ms']:.1f} |" for r in rows]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "openvino-options.md").write_text("\n".join(md) + "\n")
    (out / "openvino-options.json").write_text(json.dumps({"cpu": cpu_model_name(), "date": stamp, "rows": rows},
                                                          indent=1))
    print("\n".join(md))


if __name__ == "__main__":
    main()
