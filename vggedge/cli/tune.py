"""`tune`: time each CPU variant of a model and cache the fastest."""
from __future__ import annotations

import argparse
import json

from .common import command


def add_tune(sub: argparse._SubParsersAction) -> None:
    """The `tune` sub-command's options."""
    p = sub.add_parser("tune", help="time each CPU variant of a model here and cache the fastest for precision=auto")
    p.add_argument("--model", required=True, help="FP32 .onnx (its INT8 files beside it are timed too)")
    p.add_argument("--batch-size", type=int, default=8, help="the batch size your app runs (default 8); batch 1 is always timed too")
    p.add_argument("--seconds", type=float, default=2.0, help="timed seconds per variant")
    p.add_argument("--threads", type=int, default=None, help="inference threads (default: the tuned choice)")
    p.add_argument("--force", action="store_true", help="measure again even when a cached table exists")
    p.add_argument("--json", action="store_true")


@command("tune")
def _tune(args: argparse.Namespace) -> int:
    from ..apps.tune import format_report, run_tune

    results = run_tune(args.model, batch_size=args.batch_size, seconds=args.seconds, force=args.force,
                       threads=args.threads)
    print(json.dumps([r.to_json() for r in results], indent=2) if args.json else format_report(args.model, results))
    return 0
