"""`build`: FP16/INT8 ONNX artefacts and TensorRT engines."""
from __future__ import annotations

import argparse
from pathlib import Path

from .common import command, ints


_batch = ints("MIN,OPT,MAX", "1,8,32")


def _precisions(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


def add_build(sub: argparse._SubParsersAction) -> None:
    """The `build` sub-command's options."""
    p = sub.add_parser("build", help="FP16 / INT8 ONNX artefacts, and TensorRT engines where TensorRT exists")
    p.add_argument("--model", default=None, help="FP32 .onnx with its spec (default: export --weights first)")
    p.add_argument("--weights", default=None, help="weights to export when --model is not given")
    p.add_argument("--precision", default="fp32,fp16,int8", type=_precisions, help="comma list of fp32,fp16,int8")
    p.add_argument("--batch", default=(1, 8, 32), type=_batch, metavar="MIN,OPT,MAX")
    p.add_argument("--calib", default=None, help="calibration image folder (default: the repository's calib/)")
    p.add_argument("--calib-method", choices=["minmax", "entropy", "percentile"], default="minmax")
    p.add_argument("--fp16-io", action="store_true", help="FP16 model takes and returns float16 (default float32)")
    p.add_argument("--out", default=None, help="folder for the FP16/INT8 ONNX files and engines (default: beside the model)")
    p.add_argument("--workspace-gb", type=float, default=2.0)
    p.add_argument("--eval", default=None, metavar="DIR",
                   help="photos to measure INT8 against FP32 on, never calibration's (default: the repository's "
                        "eval/; 'none' skips the accuracy report)")
    p.add_argument("--eval-plain", action="store_true",
                   help="evaluate the photos as they are (default: 84 documented views of each)")
    p.add_argument("--allow-overlap", action="store_true",
                   help="only warn (default: refuse) when evaluation photos are calibration photos too")
    p.add_argument("--min-agreement", "--accuracy-target", type=float, default=None, metavar="PERCENT",
                   help="keep the most INT8-sensitive layers un-quantized until top-1 agreement with FP32 "
                        "reaches PERCENT on the evaluation photos")
    p.add_argument("--max-kept-layers", type=int, default=4,
                   help="at most this many layers stay high-precision for --min-agreement (default 4)")
    p.add_argument("--kept-selection", choices=["predicted", "ranked"], default="predicted",
                   help="which layers --min-agreement keeps: the cheapest set (in multiply-accumulates) expected "
                        "to reach the target from each layer's margin noise (default), or the k most sensitive")


@command("build")
def _build(args: argparse.Namespace) -> int:
    from ..apps.build import build, format_report
    from ..model.prepare import prepare_model

    model = Path(args.model) if args.model else prepare_model(args.weights)[0]
    from ..paths import EVAL_DIR

    evaluation = None if args.eval == "none" else (args.eval or EVAL_DIR)
    report = build(model, args.precision, calib=args.calib, method=args.calib_method, batch=args.batch,
                   out_dir=args.out, fp16_io=args.fp16_io, workspace_gb=args.workspace_gb, evaluation=evaluation,
                   eval_augment=not args.eval_plain, allow_overlap=args.allow_overlap,
                   min_agreement=args.min_agreement, max_kept_layers=args.max_kept_layers,
                   kept_selection=args.kept_selection)
    print(format_report(report))
    return 0
