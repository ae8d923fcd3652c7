"""INT8 on an AVX2-only CPU (AMD Zen 3) from any x86 host: the checks run under qemu's CPU emulation.

    python benchmarks/emulated_isa.py [--cpu EPYC-Milan] [--views 24] [--work engines/emulated]

Needs ``qemu-x86_64`` (Debian ``qemu-user``, 7.2 or later: its TCG emulates AVX2 but no AVX-512 and no
VNNI). The emulated process runs the same Python and packages; its CPUID is the emulated CPU's, so
onnxruntime and OpenVINO dispatch to the kernels a Zen 3 runs (``-cpu EPYC-Milan``: AVX2, FMA, no VNNI),
and vggedge's detection (cpuinfo checked against CPUID, runtime/cpu/features.py) sees that CPU too.
Emulation is slow (about 25 s per 224x224 INT8 image on a shared 2-core host; the float path, unfused Q/DQ,
slower still), so a subset of the 504 evaluation views is used, spread evenly over them, and the float-path
rows run on fewer (``--slow-views``). Rows finished by an interrupted run with the same views are kept.

On the host: the stand-in VGG16 (``normalised:0``, logits), its TensorRT-style INT8 file (minmax, calib/)
and the reduce-range CPU file; FP32 outputs; the unfused (saturation-free) evaluation of the INT8 file,
which is what ``build``'s report uses everywhere; and the INT8 file on onnxruntime's fused kernels here.
In the emulator: what vggedge detects, what ``precision="auto"`` and ``--precision int8`` plan, and the
outputs of the TensorRT-style file on a default onnxruntime session (fused U8S8 kernels: what vggedge
must not trust), of the file ``auto`` runs, and of OpenVINO native on the TensorRT-style file.
Writes benchmarks/results/emulated-isa-latest.{md,json}.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vggedge.machine import cpu_name  # noqa: E402
from vggedge.runtime.cpu import features as cpuf, variants as cpuv  # noqa: E402

FP32_REF, UNFUSED, HOST_FUSED = "FP32 (host)", "TensorRT-style INT8, unfused evaluation (host)", "TensorRT-style INT8, fused kernels (host)"
HOST_RR = "reduce-range INT8 (the file auto runs on an AVX2 CPU), fused kernels (host)"
EMU_FUSED, EMU_AUTO, EMU_NAMED, EMU_OV = (
    "TensorRT-style INT8, onnxruntime default session (emulated)", "what precision=auto runs (emulated)",
    "TensorRT-style INT8 by name, as vggedge runs it (emulated)", "TensorRT-style INT8, OpenVINO native (emulated)")


def build(work: Path) -> Path:
    """The stand-in FP32 model with its TensorRT-style and reduce-range INT8 files (written once)."""
    from vggedge.apps.build import precision_artefacts
    from vggedge.model.export import export_vgg16
    from vggedge.model.vgg16 import VGG16Options

    fp32 = work / "vgg16.onnx"
    if not fp32.exists():
        opts = VGG16Options(include_rescaling=False, include_top=True, num_classes=1000, classifier_activation=None)
        export_vgg16("normalised:0", fp32, opts)
    if cpuv.current_variant(fp32, "tensorrt") is None:
        precision_artefacts(fp32, ("int8",), calib=ROOT / "calib", method="minmax")
    avx2_only = cpuf.CpuFeatures(arch="x86_64", cores=2, avx2=True)  # the files an AVX2-only CPU's variants need
    cpuv.prepare_variants(fp32, ROOT / "calib", features=avx2_only)
    return fp32


def views(count: int) -> tuple[list[str], list[np.ndarray]]:
    """``count`` of the evaluation views (decoded images), evenly spread, with their names."""
    from vggedge.apps.accuracy import evaluation_set

    eval_set = evaluation_set(ROOT / "eval", calibration=[ROOT / "calib"])
    pick = np.unique(np.linspace(0, len(eval_set.views) - 1, count).round().astype(int))
    return [eval_set.names[i] for i in pick], [eval_set.views[i] for i in pick]


def ort_default(model: Path, x: np.ndarray, batch: int = 8) -> np.ndarray:
    """Outputs on preprocessed ``x`` of a default onnxruntime CPU session (all graph optimisations: fused kernels)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i:i + batch]})[0] for i in range(0, len(x), batch)]).reshape(len(x), -1)


def run_runner(runner, input_name: str, x: np.ndarray, batch: int = 8) -> np.ndarray:
    """Outputs of an inactive runner on preprocessed ``x`` (activated here, in batches)."""
    with runner:
        outs = [next(iter(runner.infer({input_name: x[i:i + batch]}).values())) for i in range(0, len(x), batch)]
    return np.concatenate(outs).reshape(len(x), -1)


# ---- inside the emulator ----------------------------------------------------------------
#: rows on the float path under emulation are far slower (TCG runs each AVX2 FMA through a helper): a subset
SLOW_ROWS = (EMU_NAMED, EMU_OV)


def slug(row: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in row.lower())[:60]


def worker(folder: Path) -> None:
    """Runs under qemu: detection, plans and outputs, written into ``folder`` row by row (a rerun resumes)."""
    from vggedge.runtime.base import RunnerOptions
    from vggedge.runtime.select import select_runner

    fp32 = Path((folder / "model.txt").read_text())
    x = np.load(folder / "views.npy")
    slow = json.loads((folder / "slow.json").read_text())  # indices of the views the slow rows run on
    features = cpuf.cpu_features()
    trt = cpuv.variant_path(fp32, "tensorrt")
    auto = select_runner(fp32, "auto", precision="auto", options=RunnerOptions(max_batch=8))
    named = select_runner(trt, "auto", options=RunnerOptions(max_batch=8))
    done_file = folder / "done.json"
    info = json.loads(done_file.read_text()) if done_file.is_file() else {"seconds": {}, "indices": {}}
    info.update({"isa": features.isa, "u8s8_saturates": features.u8s8_saturates,
                 "variants": [v.key for v in cpuv.variants_for(features)],
                 "auto": {"why": auto.why, "runs": auto.runner.describe()},
                 "int8 by name": {"why": named.why, "runs": named.runner.describe()}})
    name = auto.spec.input_name
    jobs = {EMU_FUSED: lambda v: ort_default(trt, v), EMU_AUTO: lambda v: run_runner(auto.runner, name, v),
            EMU_NAMED: lambda v: run_runner(named.runner, name, v)}
    if features.openvino_native:
        from vggedge.runtime.cpu.openvino_native import OpenVinoRunner

        jobs[EMU_OV] = lambda v: run_runner(OpenVinoRunner(trt, RunnerOptions(max_batch=8)), name, v)
    for row, job in jobs.items():
        if row in info["seconds"] and (folder / f"{slug(row)}.npy").exists():
            continue
        pick = slow if row in SLOW_ROWS else list(range(len(x)))
        start = time.perf_counter()
        try:
            np.save(folder / f"{slug(row)}.npy", job(x[pick]))
            info["indices"][row] = pick
        except Exception as exc:  # one engine that cannot run under emulation is reported, not fatal
            info.setdefault("errors", {})[row] = f"{type(exc).__name__}: {exc}"[:300]
        info["seconds"][row] = time.perf_counter() - start
        done_file.write_text(json.dumps(info, indent=1))
        print(f"[emulated] {row}: {len(pick)} views, {info['seconds'][row]:.0f} s", flush=True)


# ---- on the host ------------------------------------------------------------------------
def emulate(cpu: str, fp32: Path, x: np.ndarray, folder: Path, slow_views: int) -> tuple[dict, dict[str, np.ndarray]]:
    """Runs the worker under ``qemu-x86_64 -cpu CPU`` (resuming the rows a run with these views finished)."""
    qemu = shutil.which("qemu-x86_64")
    if qemu is None:
        raise SystemExit("qemu-x86_64 not found: apt-get install qemu-user (7.2 or later)")
    folder.mkdir(parents=True, exist_ok=True)
    same = (folder / "views.npy").is_file() and np.array_equal(np.load(folder / "views.npy"), x)
    if not same:
        (folder / "done.json").unlink(missing_ok=True)
    (folder / "model.txt").write_text(str(fp32))
    np.save(folder / "views.npy", x)
    slow = sorted({int(i) for i in np.linspace(0, len(x) - 1, min(slow_views, len(x))).round()})
    (folder / "slow.json").write_text(json.dumps(slow))
    env = {**os.environ, "VGGEDGE_TUNE": "0", "VGGEDGE_CACHE": str(folder / "cache")}  # tuning under emulation times qemu
    done = subprocess.run([qemu, "-cpu", cpu, sys.executable, __file__, "--worker", str(folder)], env=env,
                          stderr=subprocess.PIPE, text=True)
    # qemu warns once per thread about host-only CPUID bits TCG cannot emulate (pcid, sha-ni, ...): not ours
    sys.stderr.write("".join(line + "\n" for line in done.stderr.splitlines() if "TCG doesn't support" not in line))
    if done.returncode:
        raise SystemExit(f"the emulated worker failed (exit {done.returncode})")
    info = json.loads((folder / "done.json").read_text())
    return info, {n: np.load(folder / f"{slug(n)}.npy") for n in info["indices"]}


def compare(outputs: dict[str, np.ndarray], names: list[str], indices: dict[str, list[int]]) -> dict[str, dict]:
    """Top-1 agreement with FP32 (and flips), and closeness to the unfused evaluation, per row (on the views
    ``indices`` names for it; all of them for the rest)."""
    from vggedge.precision.agreement import measure

    rows = {}
    for name, out in outputs.items():
        pick = indices.get(name, list(range(len(names))))
        unfused = outputs[UNFUSED][pick]
        agreement = measure(outputs[FP32_REF][pick], out, [names[i] for i in pick], output_kind="logits")
        cos = (out * unfused).sum(1) / (np.linalg.norm(out, axis=1) * np.linalg.norm(unfused, axis=1))
        rows[name] = {"views": len(pick), "agree": agreement.top1, "interval": [agreement.low, agreement.high],
                      "flips": [f.view for f in agreement.flips],
                      "cosine_min_vs_unfused": float(cos.min()),
                      "max_abs_vs_unfused": float(np.abs(out - unfused).max()),
                      "logit_range": float(unfused.max() - unfused.min())}
    return rows


def report(cpu: str, info: dict, rows: dict, count: int) -> list[str]:
    host = cpuf.cpu_features()
    lines = [f"Host: {cpu_name()} ({host.isa}). Emulated: `qemu-x86_64 -cpu {cpu}`; vggedge detected "
             f"**{info['isa']}** there.", "",
             f"- `precision=\"auto\"` planned: {info['auto']['why']} (runs {info['auto']['runs']})",
             f"- the TensorRT-style file asked for by name: {info['int8 by name']['why']} (runs {info['int8 by name']['runs']})",
             f"- variants offered: {', '.join(info['variants'])}", "",
             f"{count} of the 504 evaluation views (evenly spread), stand-in `normalised:0` with logits:", "",
             "| what ran | views | top-1 agreement with FP32 (95% interval) | flips | min cosine vs unfused | max abs vs unfused (logit range) |",
             "|---|---|---|---|---|---|"]
    for name, r in rows.items():
        lo, hi = r["interval"]
        lines.append(f"| {name} | {r['views']} | {r['agree']:.1%} ({lo:.1%}-{hi:.1%}) | {len(r['flips'])} | "
                     f"{r['cosine_min_vs_unfused']:.4f} | {r['max_abs_vs_unfused']:.3g} ({r['logit_range']:.3g}) |")
    for name, err in info.get("errors", {}).items():
        lines.append(f"| {name} | | not run: {err} | | | |")
    secs = ", ".join(f"{k}: {v:.0f} s" for k, v in info["seconds"].items())
    return lines + ["", f"Emulated run times: {secs}."]


def all_views(fp32: Path) -> dict[str, dict]:
    """Agreement with FP32 over all 504 views of the reduce-range file (fused, on this host: the same integers an
    AVX2 CPU computes when nothing saturates) and of the TensorRT-style file unfused (``build``'s report)."""
    from vggedge.apps.accuracy import evaluation_set, run_evaluation
    from vggedge.preprocess import preprocess
    from vggedge.precision.agreement import measure
    from vggedge.spec import load_spec_for

    views_all = evaluation_set(ROOT / "eval", calibration=[ROOT / "calib"]).views
    names = [str(i) for i in range(len(views_all))]
    ref = run_evaluation(fp32, views_all)
    rr = cpuv.variant_path(fp32, "cpu-rr")
    outputs = {"reduce-range INT8, fused (what auto runs on an AVX2 CPU)": np.concatenate(
                   [ort_default(rr, preprocess(views_all[i:i + 32], load_spec_for(rr)))
                    for i in range(0, len(views_all), 32)]),
               "TensorRT-style INT8, unfused (build's report, every CPU)":
                   run_evaluation(cpuv.variant_path(fp32, "tensorrt"), views_all)}
    out = {}
    for name, result in outputs.items():
        a = measure(ref, result, names, output_kind="logits")
        out[name] = {"agree": a.top1, "interval": [a.low, a.high], "flips": len(a.flips)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu", default="EPYC-Milan", help="qemu CPU model (qemu-x86_64 -cpu help)")
    ap.add_argument("--views", type=int, default=24)
    ap.add_argument("--work", default=str(ROOT / "engines" / "emulated"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--slow-views", type=int, default=4, help="views for the rows on the float path (slow under TCG)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(Path(args.worker))
    from vggedge.apps.accuracy import run_evaluation
    from vggedge.preprocess import preprocess
    from vggedge.spec import load_spec_for

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    fp32 = build(work)
    names, images = views(args.views)
    trt = cpuv.variant_path(fp32, "tensorrt")
    x = preprocess(images, load_spec_for(fp32))
    outputs = {FP32_REF: run_evaluation(fp32, images), UNFUSED: run_evaluation(trt, images),
               HOST_FUSED: ort_default(trt, x), HOST_RR: ort_default(cpuv.variant_path(fp32, "cpu-rr"), x)}
    info, emulated = emulate(args.cpu, fp32, x, work / "run", args.slow_views)
    rows = compare({**outputs, **emulated}, names, info["indices"])
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    md = [f"# INT8 on an emulated {args.cpu} (AVX2, no VNNI), {stamp}", "", *report(args.cpu, info, rows, len(names))]
    if EMU_AUTO in emulated:  # integer kernels that cannot saturate give one answer on every ISA
        same = float(np.abs(emulated[EMU_AUTO] - outputs[HOST_RR]).max())
        rows["auto emulated vs reduce-range on the host"] = {"max_abs": same}
        md += ["", f"What `auto` runs on the emulated CPU against the same reduce-range file on this host: max abs "
               f"difference {same:.3g}, so the host's figure for that file over all 504 views is the AVX2 CPU's too."]
    full = all_views(fp32)
    rows["all 504 views on the host"] = full
    md += ["", "All 504 evaluation views on this host (top-1 agreement with FP32, 95% interval, flips):", "",
           "| file | agreement | flips |", "|---|---|---|"]
    md += [f"| {name} | {r['agree']:.1%} ({r['interval'][0]:.1%}-{r['interval'][1]:.1%}) | {r['flips']} |"
           for name, r in full.items()]
    md += ["", f"Reproduce: `.venv/bin/python benchmarks/emulated_isa.py --cpu {args.cpu} --views {args.views}`"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "emulated-isa-latest.md").write_text("\n".join(md) + "\n")
    (out / "emulated-isa-latest.json").write_text(json.dumps({"cpu": args.cpu, "host": cpu_name(), "info": info,
                                                              "rows": rows, "date": stamp}, indent=1))
    print("\n".join(md))


if __name__ == "__main__":
    main()
