"""Decode + preprocess throughput of the shared decode pool against one thread, on 1080p JPEG files.

    python benchmarks/decode_pool_bench.py [--images 64] [--workers N] [--seconds 3] [--out results.json]

The files are made from calib/ (each photo resized to 1920x1080, JPEG quality 90) in a
temporary folder. Each configuration decodes and preprocesses batches of 32 files into
one batch buffer (:meth:`vggedge.decode_pool.DecodePool.prepare_into`) for at least
``--seconds``; full-size and reduced (DCT-scaled) decoding are both measured. A third row
measures the GPU path's CPU fallback: :class:`~vggedge.runtime.gpu.decode.GpuDecoder` when
nvImageCodec cannot start (``auto``), which sends every image to the CPU decoder (decoding
only, 32 files per call; the kernel's preprocessing is not part of it).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vggedge.decode_pool import DecodePool, default_workers  # noqa: E402
from vggedge.preprocess import list_images  # noqa: E402
from vggedge.spec import ModelSpec  # noqa: E402


def make_files(folder: Path, count: int) -> list[Path]:
    photos = list_images(ROOT / "calib")
    paths = []
    for i in range(count):
        image = cv2.resize(cv2.imread(str(photos[i % len(photos)])), (1920, 1080), interpolation=cv2.INTER_CUBIC)
        path = folder / f"frame_{i:04d}.jpg"
        cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(path)
    return paths


def timed(step: Callable[[list[int]], int], count: int, seconds: float, batch: int = 32) -> float:
    """Images/s of ``step(indices) -> images done`` over rotating chunks of ``batch`` of ``count`` files,
    after one warm-up chunk, for at least ``seconds``."""
    step(list(range(min(batch, count))))
    done, i, t0 = 0, 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        done, i = done + step([(i + k) % count for k in range(batch)]), i + batch
    return done / (time.perf_counter() - t0)


def rate(pool: DecodePool, paths: list[Path], spec: ModelSpec, reduced: bool, seconds: float, batch: int = 32) -> float:
    """Decode + preprocess into one batch buffer (``prepare_into``)."""
    out = np.empty((batch, *spec.input_shape[1:]), np.float32)

    def step(take: list[int]) -> int:
        rows, errors = pool.prepare_into([paths[k] for k in take], spec, out, reduced_decode=reduced)
        assert not errors
        return len(rows)

    return timed(step, len(paths), seconds, batch)


def _cannot_start(**kwargs: object) -> None:
    raise RuntimeError("CUDA Runtime failure: '#35' (benchmark: no GPU decoder)")


def fallback_rate(pool: DecodePool, paths: list[Path], seconds: float, batch: int = 32) -> float:
    """The GPU path's decoder when nvImageCodec cannot start: every image goes to the CPU decoder."""
    from types import SimpleNamespace

    from vggedge.runtime.gpu.decode import GpuDecoder

    decoder = GpuDecoder(module=SimpleNamespace(DecodeParams=lambda **kwargs: None, Decoder=_cannot_start),
                         fallback=True, pool=pool)
    datas, names = [p.read_bytes() for p in paths], [str(p) for p in paths]

    def step(take: list[int]) -> int:
        out = decoder.decode([datas[k] for k in take], [names[k] for k in take])
        assert all(d.host is not None for d in out)
        return len(out)

    return timed(step, len(paths), seconds, batch)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    spec = ModelSpec()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else "?"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_files(Path(tmp), args.images)
        for reduced in (False, True):
            with DecodePool(1) as one, DecodePool(args.workers) as many:
                single, pooled = rate(one, paths, spec, reduced, args.seconds), rate(many, paths, spec, reduced,
                                                                                   args.seconds)
            rows.append({"decode": "reduced (DCT)" if reduced else "full size", "one_thread_img_s": single,
                         "pool_img_s": pooled, "workers": args.workers, "speedup": pooled / single})
        with DecodePool(1) as one, DecodePool(args.workers) as many:  # one thread: the fallback until 2026-12-06
            single, pooled = fallback_rate(one, paths, args.seconds), fallback_rate(many, paths, args.seconds)
        rows.append({"decode": "GPU path, CPU fallback (decode only)", "one_thread_img_s": single,
                     "pool_img_s": pooled, "workers": args.workers, "speedup": pooled / single})
    result = {"cpu": cpu, "cpu_count": os.cpu_count(), "opencv": cv2.__version__, "files": "1920x1080 JPEG q90",
              "rows": rows}
    for row in rows:
        print(f"{row['decode']:>36}: one thread {row['one_thread_img_s']:7.1f} img/s, pool of {row['workers']} "
              f"{row['pool_img_s']:7.1f} img/s ({row['speedup']:.2f}x)")
    print(f"cpu: {cpu} x{os.cpu_count()}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
