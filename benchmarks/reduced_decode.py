"""Reduced-scale JPEG decoding: speed against full-size decoding, and top-1 agreement on the FP32 model.

    python benchmarks/reduced_decode.py [--out benchmarks/results] [--repeats 15]

1. Decode + resize milliseconds per image (one thread), full against reduced, on
   1920x1080 and 4000x3000 JPEGs made from the calib/ photos, for the direct
   224x224 policy and for shorter_crop (256, crop 224).
2. Top-1 agreement between full and reduced decoding on the calib/ photos saved as
   JPEG at several source sizes, on the FP32 model with the ``normalised:0``
   stand-in weights (exported as the demo does), for both resize policies.

Reduced decoding can only be on by default when the agreement is 100%.
Results go to ``<out>/reduced_decode-latest.{json,md}`` with the CPU recorded.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vggedge.machine import cpu_name  # noqa: E402
from vggedge.preprocess import list_images, prepare  # noqa: E402
from vggedge.spec import ModelSpec, Preprocessing, load_spec_for  # noqa: E402

TIMING_SIZES = ((1920, 1080), (4000, 3000))
AGREEMENT_LONG_SIDES = (512, 1024, 1920, 4000)


def policies(spec: ModelSpec) -> dict[str, ModelSpec]:
    pre = spec.preprocessing
    crop = Preprocessing(pre.channel_order, pre.scale, pre.mean, pre.std, "shorter_crop", 256, pre.interpolation)
    direct = Preprocessing(pre.channel_order, pre.scale, pre.mean, pre.std, "direct", 256, pre.interpolation)
    return {"direct": spec.replace(preprocessing=direct), "shorter_crop": spec.replace(preprocessing=crop)}


def write_jpegs(folder: Path, size_for, photos: list[Path]) -> list[Path]:
    """Each photo resized (cubic) per ``size_for(h, w)`` and saved as JPEG quality 90."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for photo in photos:
        image = cv2.imread(str(photo), cv2.IMREAD_COLOR)
        w, h = size_for(*image.shape[:2])
        path = folder / f"{photo.stem}.jpg"
        cv2.imwrite(str(path), cv2.resize(image, (w, h), interpolation=cv2.INTER_CUBIC),
                    [cv2.IMWRITE_JPEG_QUALITY, 90])
        out.append(path)
    return out


def time_prepare(paths: list[Path], spec: ModelSpec, reduced: bool, repeats: int) -> float:
    """Median ms per image of prepare() (decode, resize, normalise), one thread."""
    cv2.setNumThreads(1)
    for path in paths[:2]:
        prepare(path, spec, reduced_decode=reduced)
    samples = []
    for _ in range(repeats):
        for path in paths:
            start = time.perf_counter()
            prepare(path, spec, reduced_decode=reduced)
            samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def top1(runner, spec: ModelSpec, paths: list[Path], reduced: bool) -> np.ndarray:
    batch = np.stack([prepare(p, spec, reduced_decode=reduced) for p in paths])
    return runner.infer({spec.input_name: batch})[spec.output_name].argmax(axis=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--model", default=None, help="FP32 ONNX to use (default: export normalised:0)")
    args = parser.parse_args()
    photos = list_images(REPO / "calib")
    results: dict = {"cpu": cpu_name(), "machine_note": "shared 2-core machine; ratios measured side by side",
                     "opencv": cv2.__version__, "timing": [], "agreement": []}
    with tempfile.TemporaryDirectory(prefix="vggedge-reduced-") as tmp:
        tmp_path = Path(tmp)
        model = Path(args.model) if args.model else None
        if model is None:
            from vggedge.model.export import export_vgg16
            from vggedge.model.vgg16 import VGG16Options

            model = export_vgg16("normalised:0", tmp_path / "vgg16.onnx",
                                 VGG16Options(include_rescaling=False, include_top=True, num_classes=1000)).onnx_path
        spec = load_spec_for(model)
        for w, h in TIMING_SIZES:
            paths = write_jpegs(tmp_path / f"t{w}x{h}", lambda _h, _w, w=w, h=h: (w, h), photos[:4])
            for name, pspec in policies(spec).items():
                full = time_prepare(paths, pspec, False, args.repeats)
                reduced = time_prepare(paths, pspec, True, args.repeats)
                row = {"source": f"{w}x{h}", "policy": name, "full_ms": round(full, 2),
                       "reduced_ms": round(reduced, 2), "speedup": round(full / reduced, 2)}
                results["timing"].append(row)
                print(row, flush=True)
        from vggedge.runtime.ort import OrtRunner

        with OrtRunner(model) as runner:
            for long_side in AGREEMENT_LONG_SIDES:
                def size_for(h: int, w: int, long_side: int = long_side) -> tuple[int, int]:
                    s = long_side / max(h, w)
                    return max(1, round(w * s)), max(1, round(h * s))

                paths = write_jpegs(tmp_path / f"a{long_side}", size_for, photos)
                for name, pspec in policies(spec).items():
                    a, b = top1(runner, pspec, paths, False), top1(runner, pspec, paths, True)
                    differ = [p.name for p, x, y in zip(paths, a, b) if x != y]
                    row = {"long_side": long_side, "policy": name, "images": len(paths),
                           "top1_agreement": round(float(np.mean(a == b)), 4), "differ": differ}
                    results["agreement"].append(row)
                    print(row, flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "reduced_decode-latest.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [f"CPU: {results['cpu']} ({results['machine_note']}); OpenCV {results['opencv']}", "",
             "| source | policy | full ms | reduced ms | speed-up |", "|---|---|---|---|---|"]
    lines += [f"| {r['source']} | {r['policy']} | {r['full_ms']} | {r['reduced_ms']} | {r['speedup']}x |"
              for r in results["timing"]]
    lines += ["", "| long side | policy | top-1 agreement | differing |", "|---|---|---|---|"]
    lines += [f"| {r['long_side']} | {r['policy']} | {100 * r['top1_agreement']:.1f}% | {', '.join(r['differ']) or '-'} |"
              for r in results["agreement"]]
    (out / "reduced_decode-latest.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
