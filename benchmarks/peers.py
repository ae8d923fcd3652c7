"""vggedge against what a user would otherwise pick, measured in one run on the same inputs.

    python benchmarks/peers.py [--quick] [--out benchmarks/results]

Peers: a plain onnxruntime session with default settings on the FP32 model (the
baseline every ratio is against), each vggedge CPU variant (the OpenVINO plugin
EP's ``ov-int8``/``ov-bf16`` included: a row says why when the plugin cannot run
here), vggedge's ``precision="auto"`` path as an app gets it (tuned per machine,
at each batch size), PyTorch eager on the CPU (FP32, and bfloat16 where the CPU
has AVX512_BF16 or AMX), OpenVINO native (the ``openvino`` package, bench-only)
on the same FP32 and INT8 files, and PyTorch eager FP16 (channels-last) on a GPU
when there is one. The auto path and OpenVINO native INT8 are also timed
round-robin against each other, for the issue-12 acceptance ratio. The machine's
sustained matrix-multiply rates are measured in the same run, and each result is
reported as a share of the ceiling for its precision. Only inference is timed
(the same preprocessed batch for everyone). Writes a Markdown table and JSON.
``--end-to-end`` adds the loop a user writes without vggedge (OpenCV decode and
resize, then OpenVINO native inference, serially) beside vggedge end to end, from
1080p JPEG files (benchmarks/end_to_end.py).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vggedge.apps.bench.preprocessing import bench_preprocess  # noqa: E402
from vggedge.apps.info import cpu_name, versions  # noqa: E402
from vggedge.apps.bench.stats import summarize  # noqa: E402
from vggedge.model.export import export_vgg16  # noqa: E402
from vggedge.model.vgg16 import VGG16Options  # noqa: E402
from vggedge.preprocess import list_images, preprocess  # noqa: E402
from vggedge.runtime.cpu import features as cpuf, variants as cpuv  # noqa: E402
from vggedge.runtime.select import select_runner  # noqa: E402
from vggedge.runtime.cpu import openvino_ep  # noqa: E402
from vggedge.runtime.cpu import tune as vtune  # noqa: E402
from vggedge.runtime.base import RunnerOptions  # noqa: E402
from vggedge.runtime.cpu.openvino_ep import OpenVinoOptions  # noqa: E402
from vggedge.spec import load_spec_for  # noqa: E402

GMAC_PER_IMAGE = 15.47
BATCHES = (1, 8)
AUTO = 'vggedge precision="auto" (the variant tuned per machine and batch)'
NATIVE = "OpenVINO INT8 Q/DQ ONNX (TensorRT-style)"


def timeit(fn, warmup: int, iters: int, min_seconds: float) -> dict:
    """Median and spread of ``fn()`` after warm-up; at least ``iters`` runs and ``min_seconds``."""
    for _ in range(warmup):
        fn()
    samples, start = [], time.perf_counter()
    while len(samples) < iters or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return summarize(samples)


# ---- ceilings -------------------------------------------------------------------------------
def ceilings(quick: bool) -> dict[str, float]:
    """Sustained GMAC/s of FP32 (numpy sgemm), BF16 (torch) and INT8 (onnxruntime MatMulInteger)."""
    n = 1024 if quick else 2048
    a, b = np.random.rand(n, n).astype(np.float32), np.random.rand(n, n).astype(np.float32)
    out = {"fp32": n ** 3 / timeit(lambda: a @ b, 2, 5, 1.0)["median"] / 1e9}
    try:
        import torch

        ta, tb = torch.rand(n, n).bfloat16(), torch.rand(n, n).bfloat16()
        out["bf16"] = n ** 3 / timeit(lambda: ta @ tb, 2, 5, 1.0)["median"] / 1e9
    except ImportError:
        pass
    out["int8"] = _int8_gemm_rate(n)
    return out


def _int8_gemm_rate(n: int) -> float:
    import onnxruntime as ort
    from onnx import TensorProto, helper

    node = helper.make_node("MatMulInteger", ["a", "b"], ["y"])
    graph = helper.make_graph([node], "mmi", [helper.make_tensor_value_info("a", TensorProto.UINT8, [n, n]),
                                               helper.make_tensor_value_info("b", TensorProto.INT8, [n, n])],
                              [helper.make_tensor_value_info("y", TensorProto.INT32, [n, n])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {"a": np.random.randint(0, 255, (n, n), dtype=np.uint8), "b": np.random.randint(-127, 127, (n, n), dtype=np.int8)}
    return n ** 3 / timeit(lambda: sess.run(None, feed), 2, 5, 1.0)["median"] / 1e9


# ---- peers ----------------------------------------------------------------------------------
def ort_default(model: Path):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return lambda x: sess.run(None, {"images": x})


def torch_vgg(model: Path, dtype: str, device: str = "cpu"):
    """PyTorch eager VGG16 (channels-last) with the same weights (read from the ONNX initializers)."""
    import torch

    from torch_peer import torch_vgg16

    net = torch_vgg16(model)
    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    net = net.to(device=device, dtype=torch_dtype).to(memory_format=torch.channels_last)

    def run(x):
        with torch.inference_mode():
            out = net(torch.from_numpy(x).to(device=device, dtype=torch_dtype).contiguous(memory_format=torch.channels_last))
            return out.float().cpu()  # the copy back synchronises, so GPU time is fully counted
    return run


def torch_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def openvino_peer(model: Path, options: OpenVinoOptions = OpenVinoOptions("LATENCY")):
    """OpenVINO native with the same properties vggedge gives the plugin EP."""
    import openvino as ov

    compiled = ov.Core().compile_model(str(model), "CPU", options.properties())
    request = compiled.create_infer_request()
    return lambda x: request.infer({0: x})


def vggedge_runner(variant: cpuv.CpuVariant, model_dir: Path):
    """vggedge's own CPU path, exactly as `Classifier(..., backend='ort-cpu')` would run it."""
    runner = cpuv.runner_for(variant, model_dir)
    runner.activate()
    return lambda x: runner.infer({"images": x})


def vggedge_auto(fp32: Path):
    """`precision="auto"` as an app at each batch size gets it: one runner per batch size, each on the
    variant measured fastest at that batch (tuned now unless cached; VGGEDGE_TUNE=0 gives the feature order)."""
    runners = {b: select_runner(fp32, "ort-cpu", options=RunnerOptions(max_batch=b), precision="auto").runner.activate()
               for b in BATCHES}
    print("auto path: " + ", ".join(f"b{b} {r.describe()}" for b, r in runners.items()), flush=True)
    return lambda x: runners[x.shape[0]].infer({"images": x})


def unavailable(reason: str):
    """A peer that cannot run here: its row says why."""
    def factory():
        raise RuntimeError(reason)
    return factory


def plugin_rows(features: cpuf.CpuFeatures) -> dict:
    """Rows for the plugin variants this machine cannot run (the runnable ones come from variants_for)."""
    if features.openvino_plugin or not features.x86:
        return {}
    reason = openvino_ep.status().reason if openvino_ep.installed() else "onnxruntime-ep-openvino not installed"
    rows = {"vggedge INT8 Q/DQ on the OpenVINO plugin EP": (unavailable(reason), "int8")}
    if features.bf16:
        rows["vggedge FP32 file in bfloat16 on the OpenVINO plugin EP"] = (unavailable(reason), "bf16")
    return rows


def head_to_head(a, b, inputs: dict[int, np.ndarray], rounds: int, seconds: float) -> dict[int, float]:
    """Median time of ``a`` over median time of ``b`` per batch, timed round-robin (fair on a shared machine)."""
    samples = {(k, batch): [] for k in "ab" for batch in inputs}
    for _ in range(rounds):
        for k, fn in (("a", a), ("b", b)):
            for batch, x in inputs.items():
                start = time.perf_counter()
                while not samples[k, batch] or time.perf_counter() - start < seconds:
                    t0 = time.perf_counter()
                    fn(x)
                    samples[k, batch].append(time.perf_counter() - t0)
    return {batch: float(np.median(samples["a", batch]) / np.median(samples["b", batch])) for batch in inputs}


def acceptance_ratios(fp32: Path, inputs: dict[int, np.ndarray], quick: bool) -> dict:
    """Issue 12's check: the auto path's speed as a share of OpenVINO native INT8 (>= 0.95 wanted)."""
    try:
        auto, native = vggedge_auto(fp32), openvino_peer(cpuv.variant_path(fp32, "tensorrt"))
    except Exception as exc:  # reported, not fatal
        return {"error": f"{type(exc).__name__}: {exc}"}
    time_ratio = head_to_head(auto, native, inputs, 2 if quick else 4, 0.5 if quick else 2.0)
    return {f"b{b}": 1 / r for b, r in time_ratio.items()}  # speed of auto / speed of native


# ---- driver ---------------------------------------------------------------------------------
def prepare(model_dir: Path) -> Path:
    fp32 = model_dir / "vgg16.onnx"
    if not fp32.exists():
        export_vgg16("normalised:0", fp32, VGG16Options(include_rescaling=False, include_top=True, num_classes=1000))
    cpuv.prepare_variants(fp32, ROOT / "calib")
    return fp32


def measure(peers: dict, inputs: dict[int, np.ndarray], quick: bool) -> dict:
    results = {}
    for name, (factory, precision) in peers.items():
        try:
            fn = factory()
        except Exception as exc:  # a peer that cannot run here is reported, not fatal
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"{name}: skipped ({exc})", flush=True)
            continue
        row = {"precision": precision}
        for batch, x in inputs.items():
            s = timeit(lambda: fn(x), 2 if quick else 3, 5 if quick else 10, 1.0 if quick else 3.0)
            row[f"b{batch}"] = {"median_ms": 1000 * s["median"], "p90_ms": 1000 * s["p90"], "cv": s["cv"],
                                "img_per_s": batch / s["median"]}
        print(f"{name}: " + ", ".join(f"b{b} {row[f'b{b}']['median_ms']:.1f} ms" for b in inputs), flush=True)
        results[name] = row
    return results


def table(results: dict, ceiling: dict, baseline: str) -> str:
    base = results[baseline]
    lines = ["| system | precision | batch 1 latency (ms) | x vs baseline | batch 8 throughput (img/s) | x vs baseline | share of ceiling (b8) |",
             "|---|---|---|---|---|---|---|"]
    for name, row in results.items():
        if "error" in row:
            lines.append(f"| {name} | - | not run: {row['error'][:160]} | | | | |")
            continue
        b1, b8 = row["b1"], row["b8"]
        ceil = ceiling.get(row["precision"])
        share = f"{100 * b8['img_per_s'] * GMAC_PER_IMAGE / ceil:.0f}%" if ceil else "-"
        lines.append(f"| {name} | {row['precision']} | {b1['median_ms']:.1f} | {base['b1']['median_ms'] / b1['median_ms']:.2f} | "
                     f"{b8['img_per_s']:.1f} | {b8['img_per_s'] / base['b8']['img_per_s']:.2f} | {share} |")
    return "\n".join(lines)


def acceptance_line(acceptance: dict) -> str:
    """One sentence with the auto path / OpenVINO native INT8 speed ratios (issue 12 wants >= 0.95)."""
    if "error" in acceptance:
        return f"Auto path vs OpenVINO native INT8: not measured ({acceptance['error']})."
    parts = [f"{acceptance[f'b{b}']:.2f}x at batch {b}" for b in BATCHES if f"b{b}" in acceptance]
    verdict = "meets" if all(v >= 0.95 for v in acceptance.values()) else "does NOT meet"
    return (f"Auto path vs OpenVINO native INT8, timed round-robin in this run (speed ratio, higher is better): "
            f"{', '.join(parts)}; {verdict} the 0.95x target.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shorter runs (for a smoke test)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--models", default=str(ROOT / "engines" / "bench"))
    ap.add_argument("--note", default="", help="appended to the machine line (e.g. 'shared with other jobs')")
    ap.add_argument("--end-to-end", action="store_true", help="also time the plain OpenCV + OpenVINO loop vs vggedge "
                    "from 1080p JPEG files")
    args = ap.parse_args()
    model_dir = Path(args.models)
    model_dir.mkdir(parents=True, exist_ok=True)
    fp32 = prepare(model_dir)
    spec = load_spec_for(fp32)
    photos = list_images(ROOT / "calib")
    inputs = {b: preprocess([photos[i % len(photos)] for i in range(b)], spec) for b in BATCHES}
    features = cpuf.cpu_features()
    peers = {"onnxruntime FP32, default session (baseline)": (lambda: ort_default(fp32), "fp32")}
    for variant in cpuv.variants_for(features):
        peers[f"vggedge {variant.label}"] = (lambda v=variant: vggedge_runner(v, model_dir), variant.precision)
    peers.update(plugin_rows(features))
    peers[AUTO] = (lambda: vggedge_auto(fp32), "int8")
    peers["PyTorch eager FP32"] = (lambda: torch_vgg(fp32, "fp32"), "fp32")
    if features.bf16:
        peers["PyTorch eager bfloat16"] = (lambda: torch_vgg(fp32, "bf16"), "bf16")
    # OpenVINO lowers FP32 to bfloat16 by default on CPUs with bf16 support: compare it with that ceiling.
    peers["OpenVINO FP32 ONNX" + (" (runs bf16 inside)" if features.bf16 else "")] = (
        lambda: openvino_peer(fp32), "bf16" if features.bf16 else "fp32")
    if torch_cuda():
        peers["PyTorch eager FP16 channels-last (GPU)"] = (lambda: torch_vgg(fp32, "fp16", "cuda"), "fp16-gpu")
    peers[NATIVE] = (lambda: openvino_peer(cpuv.variant_path(fp32, "tensorrt")), "int8")
    ceiling = ceilings(args.quick)
    results = measure(peers, inputs, args.quick)
    acceptance = acceptance_ratios(fp32, inputs, args.quick)
    pre = bench_preprocess(spec, repeats=5 if args.quick else 20)
    baseline = next(iter(peers))
    stamp = dt.datetime.now().strftime("%Y-%m-%d")
    env = {"cpu": cpu_name(), "cores": __import__("os").cpu_count(), "features": features.__dict__,
           "python": platform.python_version(), "packages": {k: v for k, v in versions().items() if v},
           "ceilings_gmac_s": ceiling, "date": stamp, "quick": args.quick, "note": args.note,
           "openvino_plugin": openvino_ep.describe()}
    md = [f"# vggedge vs peers, {stamp}", "",
          f"Machine: {env['cpu']}, {env['cores']} cores, features {', '.join(k for k, v in features.__dict__.items() if v is True)}"
          + (f"; {args.note}" if args.note else "") + ".",
          "OpenVINO plugin EP: " + (openvino_ep.status().reason or "usable") + ".",
          "Ceilings measured in this run (GMAC/s): " + ", ".join(f"{k} {v:.0f}" for k, v in ceiling.items()) + ".",
          f"VGG16 224x224: {GMAC_PER_IMAGE} GMAC per image. Inference only, same preprocessed inputs; medians.",
          "Ceilings are sustained GEMM rates of library microbenchmarks (numpy sgemm, torch bf16 matmul, "
          "onnxruntime MatMulInteger u8xs8) at 2048^3; tuned convolution kernels can beat a plain GEMM, so a "
          "share above 100% reads 'faster than a plain GEMM of that precision on this machine'.",
          "Packages: " + ", ".join(f"{k} {v}" for k, v in env["packages"].items()), "",
          table(results, ceiling, baseline), "",
          acceptance_line(acceptance), "",
          "The auto path's measured tables (`vggedge tune`; seconds per batch of each runnable variant):", "",
          "```", *[line for t in vtune.table_for(fp32) for line in vtune.format_table(t)], "```", "",
          "OpenCV preprocessing (`vggedge bench --preprocess-only`), 1920x1080 BGR frames to a 224x224 tensor:", "",
          "| case | threads | median (ms) | frames/s |", "|---|---|---|---|",
          *[f"| {r.case} | {r.threads} | {r.median_ms:.2f} | {r.frames_per_s:.0f} |" for r in pre], "",
          "Reproduce: `.venv/bin/python benchmarks/peers.py" + (" --end-to-end`" if args.end_to_end else "`")]
    e2e = None
    if args.end_to_end:
        from end_to_end import lines as e2e_lines, measure_e2e

        e2e = measure_e2e(fp32, rounds=1 if args.quick else 2)
        md[-1:-1] = ["End to end from 1080p JPEG files, the plain loop beside vggedge (benchmarks/end_to_end.py):",
                     "", *e2e_lines(e2e), ""]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "peers-latest.md").write_text("\n".join(md) + "\n")
    (out / "peers-latest.json").write_text(json.dumps({"environment": env, "results": results,
                                                       "acceptance_auto_vs_openvino_int8": acceptance,
                                                       "preprocess": [r.__dict__ for r in pre],
                                                       "end_to_end": e2e}, indent=1))
    print("\n".join(md))


if __name__ == "__main__":
    main()
