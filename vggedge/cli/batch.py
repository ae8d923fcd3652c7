"""`batch`: classify or embed large image sets."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import add_decoder_option, command


def add_batch(sub: argparse._SubParsersAction) -> None:
    """The `batch` sub-command's options."""
    p = sub.add_parser("batch", help="classify (or embed) large image sets into JSONL/CSV/Parquet, locally or on Ray")
    p.add_argument("inputs", nargs="+", help="folders (recursive), globs, list files (.txt), tar shards or URLs")
    p.add_argument("--out", required=True, help="results file: .jsonl, .csv, .parquet (or .npy with --features)")
    p.add_argument("--model", default=None, help="exported .onnx (default: export --weights to the cache)")
    p.add_argument("--weights", default=None, help="weight file to export first when --model is not given")
    p.add_argument("--engine", choices=["local", "ray"], default="local")
    p.add_argument("--address", default=None, help="Ray cluster: auto or ray://HOST:10001 (default: a local Ray)")
    p.add_argument("--backend", default="auto")
    p.add_argument("--precision", default="auto", help="auto (fastest CPU variant beside the model) or as-given")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--features", action="store_true", help="write the model's output vector instead of labels")
    p.add_argument("--resume", action="store_true", help="continue a killed run, skipping images already written")
    p.add_argument("--overwrite", action="store_true", help="start again, replacing an existing output")
    p.add_argument("--workers", type=int, default=None, help="decode workers (default: CPU count)")
    p.add_argument("--worker-kind", choices=["thread", "process"], default="thread")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads (CPU backend)")
    add_decoder_option(p, "where images decode: auto (the GPU on a GPU runner with nvImageCodec and the CUDA "
                          "kernels; on Ray, inside GPU actors), gpu (an error naming why when it cannot) or cpu "
                          "(the decode workers, or Ray's CPU tasks); default: $VGGEDGE_DECODER, else auto")
    p.add_argument("--max-bytes", type=int, default=256 * 2**20, help="larger files are recorded as errors")
    p.add_argument("--max-pixels", type=int, default=100_000_000, help="larger images are recorded as errors")
    p.add_argument("--read-timeout", type=float, default=30.0,
                   help="seconds a remote read (URL) may wait for data; a whole body must arrive within 4x that")
    p.add_argument("--ray-actors", type=int, default=None, help="inference actors (default: one per GPU, else 1)")
    p.add_argument("--ray-object-store-mb", type=int, default=1024, help="object-store memory Ray Data may fill")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


@command("batch")
def _batch_job(args: argparse.Namespace) -> int:
    from ..apps.batch import run as run_batch
    from ..model.prepare import prepare_model

    model = Path(args.model) if args.model else prepare_model(args.weights)[0]
    summary = run_batch(args.inputs, out=args.out, model=model, engine=args.engine, address=args.address,
                        backend=args.backend, precision=args.precision, batch_size=args.batch_size,
                        top_k=args.top_k, features=args.features, resume=args.resume, overwrite=args.overwrite,
                        workers=args.workers, worker_kind=args.worker_kind, threads=args.threads,
                        max_bytes=args.max_bytes, max_pixels=args.max_pixels, read_timeout=args.read_timeout, ray_actors=args.ray_actors,
                        ray_object_store_mb=args.ray_object_store_mb, decoder=args.decoder,
                        progress=False if args.no_progress else None)
    print(json.dumps(summary.to_dict(), indent=2) if args.json else summary.format())
    return summary.exit_status
