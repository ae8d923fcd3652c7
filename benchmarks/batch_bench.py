"""`vggedge batch` (local engine) against inference alone, measured side by side in one run.

    python benchmarks/batch_bench.py [--count 1000] [--big-count 4000] [--size 48] [--batch 16]

Generates ``--big-count`` JPEGs of mixed sizes (320x240 to 1024x768, cut from the
calib/ photographs), exports VGG16 at ``--size`` (random weights: only speed is
measured), then, each in a fresh process so peak RSS belongs to that run alone:
1. inference only: the same runner (backend, precision, batch size) fed one
   preprocessed batch over and over, as many images as the job (before and
   after the engine runs, since a shared machine drifts);
2. the local engine on ``--count`` images with thread decode workers, then with
   process workers;
3. the local engine on ``--big-count`` images (memory must stay flat).
Writes benchmarks/results/batch-latest.{json,md}.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vggedge.machine import cpu_name  # noqa: E402
from vggedge.model.export import export_vgg16  # noqa: E402
from vggedge.model.vgg16 import VGG16Options  # noqa: E402
from vggedge.paths import CALIB_DIR  # noqa: E402

SIZES = ((320, 240), (640, 480), (500, 375), (800, 600), (1024, 768), (480, 640))

INFER_ONLY = """
import json, sys, time
import numpy as np
from vggedge.apps.batch.summary import peak_rss_mb
from vggedge.runtime.base import RunnerOptions
from vggedge.runtime.select import select_runner
from vggedge.spec import load_spec_for
model, backend, precision, batch, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
spec = load_spec_for(model)
sel = select_runner(model, backend, precision=precision, options=RunnerOptions(max_batch=batch))
x = np.random.default_rng(0).normal(0, 50, (batch, *spec.input_shape[1:])).astype(spec.dtype)
with sel.runner as runner:
    runner.infer({spec.input_name: x})
    t0, done = time.perf_counter(), 0
    while done < count:
        runner.infer({spec.input_name: x[: min(batch, count - done)]})
        done += min(batch, count - done)
    seconds = time.perf_counter() - t0
print(json.dumps({"images": done, "seconds": seconds, "images_per_s": done / seconds,
                  "backend": sel.backend, "peak_rss_mb": peak_rss_mb()}))
"""

ENGINE = """
import json, sys
from vggedge.batch import run
folder, out, model, backend, precision, batch, kind = sys.argv[1:8]
s = run([folder], out=out, model=model, backend=backend, precision=precision, batch_size=int(batch),
        worker_kind=kind, progress=False, overwrite=True)
print(json.dumps(s.to_dict()))
"""


def make_images(folder: Path, count: int) -> list[Path]:
    """``count`` JPEGs of mixed sizes cut from the calib/ photos (each one slightly different)."""
    photos = [cv2.imread(str(p)) for p in sorted(CALIB_DIR.glob("*.jpg"))]
    paths = []
    for i in range(count):
        w, h = SIZES[i % len(SIZES)]
        image = cv2.resize(photos[i % len(photos)], (w, h), interpolation=cv2.INTER_AREA)
        image = cv2.flip(image, 1) if (i // len(photos)) % 2 else image
        image[i % h, :] = (i * 37) % 256  # one distinct row: no two files are the same
        sub = folder / f"{i // 1000:03d}"
        sub.mkdir(exist_ok=True)
        path = sub / f"img{i:06d}.jpg"
        cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(path)
    return paths


def child(code: str, *args: object) -> dict:
    done = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT)
    if done.returncode not in (0, 3):
        raise SystemExit(f"benchmark child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--big-count", type=int, default=4000)
    ap.add_argument("--size", type=int, default=48, help="model input size (224 is VGG16's own)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--note", default="", help="machine state to record beside the numbers, e.g. 'idle'")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="vggedge-batch-bench-") as tmp:
        tmp = Path(tmp)
        small, big = tmp / "small", tmp / "big"
        small.mkdir(), big.mkdir()
        paths = make_images(big, args.big_count)
        for path in paths[: args.count]:
            (small / path.name).symlink_to(path)
        opts = VGG16Options(include_rescaling=False, include_top=True, num_classes=1000,
                            input_shape=(args.size, args.size, 3))
        model = export_vgg16("random:0", tmp / "model" / "vgg16.onnx", opts).onnx_path
        common = (model, args.backend, args.precision, args.batch)
        before = child(INFER_ONLY, *common, args.count)
        threads = child(ENGINE, small, tmp / "t.jsonl", *common, "thread")
        procs = child(ENGINE, small, tmp / "p.jsonl", *common, "process")
        after = child(INFER_ONLY, *common, args.count)  # again: a shared machine drifts
        large = child(ENGINE, big, tmp / "b.jsonl", *common, "thread")
    infer = {**before, "images_per_s": (before["images_per_s"] + after["images_per_s"]) / 2}
    result = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "cpu": cpu_name(),
              "args": vars(args), "inference_only": infer, "inference_only_before": before,
              "inference_only_after": after, "local_threads": threads, "local_processes": procs,
              "local_big": large}
    write(result, Path(args.out))
    return result


def write(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "batch-latest.json").write_text(json.dumps(result, indent=2) + "\n")
    a, inf = result["args"], result["inference_only"]
    rows = [("inference only, before the engine runs", result["inference_only_before"]),
            ("inference only, after", result["inference_only_after"]),
            ("vggedge batch, thread decode workers", result["local_threads"]),
            ("vggedge batch, process decode workers", result["local_processes"]),
            (f"vggedge batch, thread workers, {a['big_count']} images", result["local_big"])]
    lines = [f"# vggedge batch vs inference only, {result['date'][:10]}", "",
             f"Machine: {result['cpu']}{' (' + a['note'] + ')' if a.get('note') else ''}. Model: VGG16 at "
             f"{a['size']}x{a['size']} (random weights), backend {inf['backend']}, batch {a['batch']}. "
             f"Inputs: JPEGs of mixed sizes (320x240 to 1024x768).", "",
             "Inference only: the same runner (backend, precision, batch) fed one preprocessed batch over and "
             "over; the ratio column is against the mean of its two runs.", "",
             "| run | images | images/s | vs inference only | peak RSS (MiB) |", "|---|---|---|---|---|"]
    for name, r in rows:
        ips = r["images_per_s"]
        lines.append(f"| {name} | {r['images']} | {ips:.1f} | {ips / inf['images_per_s']:.2f} | "
                     f"{r['peak_rss_mb']:.0f} |")
    th = result["local_threads"]["stages"]
    lines += ["", "Stage seconds of the thread run (decode is CPU-seconds summed over workers): "
              + ", ".join(f"{k} {v:.1f}" for k, v in th.items())]
    (out / "batch-latest.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
