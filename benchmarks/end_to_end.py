"""End to end from 1080p JPEG files: the loop a user writes without vggedge, against vggedge, in one run.

    python benchmarks/end_to_end.py --model engines/bench/vgg16.onnx [--images 48] [--rounds 2]

- plain loop: for each file, OpenCV decode, resize to 224x224, normalise, then
  OpenVINO native inference (LATENCY hint), serially, one image at a time; on the
  INT8 Q/DQ file where the CPU's int8 products cannot saturate, else the FP32 file;
- vggedge end to end: ``Classifier(model, "ort-cpu", precision="auto")`` over the
  same files (decode and preprocessing overlap inference in ``Runner.run``);
- vggedge inference only: the same runner on one prepared batch (the rate the
  end-to-end rate is held against);
- vggedge decode only: the shared decode pool preparing the same files, no inference;
- vggedge end to end with reduced-scale JPEG decoding (``VGGEDGE_REDUCED_DECODE=1``),
  and its decode-only rate.

When inference already keeps every core busy (the CPU backends), decoding can only
take cores from it: end to end is bounded by ``1 / (1/inference + 1/decode)`` (both
measured here on all cores), whatever the overlap. The report gives that bound and
the share of it reached, so a shortfall is split into what overlap could still win
and what only cheaper decoding (or more cores, or a GPU decoder) can.

The modes are timed round-robin for ``--rounds`` rounds; the best round of each
counts. Writes benchmarks/results/end-to-end-latest.{md,json}.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vggedge.machine import cpu_name  # noqa: E402
from vggedge.apps.classify import Classifier  # noqa: E402
from vggedge.decode_pool import shared_pool  # noqa: E402
from vggedge.preprocess import list_images, preprocess  # noqa: E402
from vggedge.runtime.cpu import features as cpuf, variants as cpuv  # noqa: E402
from vggedge.spec import ModelSpec, load_spec_for  # noqa: E402

PLAIN = "plain loop (OpenCV + OpenVINO native, serial)"
E2E = "vggedge end to end"
ONLY = "vggedge inference only"
DECODE = "vggedge decode only (decode pool, all cores)"
E2E_R = "vggedge end to end, reduced-scale JPEG decoding"
DECODE_R = "vggedge decode only, reduced-scale JPEG decoding"


def make_jpegs(folder: Path, count: int) -> list[Path]:
    """``count`` 1920x1080 JPEGs made from the calib/ photos (each slightly different)."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    photos = list_images(ROOT / "calib")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        path = folder / f"frame{i:03d}.jpg"
        if not path.exists():
            image = cv2.resize(cv2.imread(str(photos[i % len(photos)])), (1920, 1080))
            image = np.clip(image.astype(np.int16) + rng.integers(-3, 4, image.shape), 0, 255).astype(np.uint8)
            cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(path)
    return paths


def plain_loop(model: Path, spec: ModelSpec):
    """The loop without vggedge: returns a function running it over a list of files (top-1 per file)."""
    import cv2
    import openvino as ov

    compiled = ov.Core().compile_model(str(model), "CPU", {"PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    pre = spec.preprocessing
    mean, std = np.array(pre.mean, np.float32), np.array(pre.std, np.float32)

    def run(paths: list[Path]) -> list[int]:
        top = []
        for path in paths:
            image = cv2.resize(cv2.imread(str(path)), (spec.width, spec.height), interpolation=cv2.INTER_LINEAR)
            if pre.channel_order == "RGB":
                image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
            x = ((image.astype(np.float32) * pre.scale - mean) / std).transpose(2, 0, 1)[None]
            top.append(int(np.argmax(request.infer({0: x})[0])))
        return top
    return run


def vggedge_loop(fp32: Path, batch: int):
    clf = Classifier(fp32, "ort-cpu", batch_size=batch, precision="auto").__enter__()
    print(f"vggedge runs {clf.runner.describe()}", flush=True)
    return clf, (lambda paths: [r.predictions[0].index for r in clf.classify_iter(paths, k=1, strict=True)])


def reduced(fn):
    """``fn`` run with reduced-scale JPEG decoding switched on for the process (and back off)."""
    from vggedge.preprocess import set_reduced_decode

    def run(paths):
        set_reduced_decode(True)
        try:
            return fn(paths)
        finally:
            set_reduced_decode(False)
    return run


def decode_only(spec: ModelSpec, batch: int, reduced_decode: bool):
    """The decode pool preparing every file into one batch buffer after another (what end to end decodes)."""
    out = np.zeros((batch, *spec.input_shape[1:]), np.dtype(spec.dtype))

    def run(paths):
        for i in range(0, len(paths), batch):
            shared_pool().prepare_into(paths[i:i + batch], spec, out, reduced_decode=reduced_decode)
    return run


def bound(inference: float, decode: float) -> float:
    """Img/s when decoding and inference share the same cores and each alone keeps them all busy."""
    return 1.0 / (1.0 / inference + 1.0 / decode)


def measure_e2e(fp32: Path, images: int = 48, rounds: int = 2, batch: int = 8) -> dict:
    """Img/s of the plain loop, vggedge end to end and vggedge inference only (best round of each), with context."""
    spec = load_spec_for(fp32)
    paths = make_jpegs(fp32.parent / "jpeg1080", images)
    features = cpuf.cpu_features()
    plain_file = fp32 if features.u8s8_saturates else cpuv.variant_path(fp32, "tensorrt")
    plain = plain_loop(plain_file, spec)
    clf, ours = vggedge_loop(fp32, batch)
    x = preprocess([paths[i % len(paths)] for i in range(batch)], spec)
    calls = -(-len(paths) // batch)
    fns = {PLAIN: plain, E2E: ours, ONLY: lambda _: [clf.runner.infer({spec.input_name: x}) for _ in range(calls)],
           DECODE: decode_only(spec, batch, False), E2E_R: reduced(ours), DECODE_R: decode_only(spec, batch, True)}
    best = dict.fromkeys(fns, 0.0)
    try:
        for fn in fns.values():
            fn(paths[:batch])  # warm-up
        for _ in range(rounds):
            for name, fn in fns.items():
                t0 = time.perf_counter()
                fn(paths)
                done = batch * calls if name == ONLY else len(paths)
                best[name] = max(best[name], done / (time.perf_counter() - t0))
                print(f"{name}: {best[name]:.1f} img/s", flush=True)
        ran = clf.runner.describe()
    finally:
        clf.__exit__(None, None, None)
    bounds = {"full": bound(best[ONLY], best[DECODE]), "reduced": bound(best[ONLY], best[DECODE_R])}
    return {"cpu": cpu_name(), "bounds": bounds, "isa": features.isa, "cores": features.cores, "files": len(paths),
            "rounds": rounds, "batch": batch, "plain_file": plain_file.name, "vggedge_ran": ran, "img_per_s": best}


def lines(result: dict) -> list[str]:
    """The Markdown section for one measurement."""
    best = result["img_per_s"]
    return [f"CPU: {result['cpu']} ({result['cores']} cores; {result['isa']}); {result['files']} files 1920x1080; "
            f"best of {result['rounds']} round-robin rounds. Plain loop on {result['plain_file']}; vggedge ran "
            f"{result['vggedge_ran']}, batch {result['batch']}.", "",
            "| mode | img/s |", "|---|---|", *[f"| {k} | {v:.1f} |" for k, v in best.items()], "",
            f"vggedge end to end / plain loop: {best[E2E] / best[PLAIN]:.2f}x (target >= 1.5x); "
            f"end to end / inference only: {best[E2E] / best[ONLY]:.2f}x (target >= 0.9x).", "",
            f"Shared-core bound 1/(1/inference + 1/decode): {result['bounds']['full']:.1f} img/s "
            f"({result['bounds']['full'] / best[ONLY]:.2f}x of inference only); end to end reaches "
            f"**{best[E2E] / result['bounds']['full']:.0%}** of it. With reduced-scale decoding: bound "
            f"{result['bounds']['reduced']:.1f} img/s ({result['bounds']['reduced'] / best[ONLY]:.2f}x), reached "
            f"**{best[E2E_R] / result['bounds']['reduced']:.0%}**; end to end / inference only "
            f"{best[E2E_R] / best[ONLY]:.2f}x, / plain loop {best[E2E_R] / best[PLAIN]:.2f}x."]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="FP32 vgg16.onnx with its INT8 files beside it")
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    fp32 = Path(args.model)
    result = measure_e2e(fp32, args.images, args.rounds, args.batch)
    md = [f"# End to end from 1080p JPEGs, {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC}", "",
          *lines(result), "", f"Reproduce: `.venv/bin/python benchmarks/end_to_end.py --model {fp32}`"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "end-to-end-latest.md").write_text("\n".join(md) + "\n")
    (out / "end-to-end-latest.json").write_text(json.dumps(result, indent=1))
    print("\n".join(md))


if __name__ == "__main__":
    main()
