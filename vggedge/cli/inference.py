"""`demo`, `classify`, `compare` and `bench`: running a model on images."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from ..errors import VggEdgeError
from .common import PRECISION_CHOICES, PRECISION_HELP, add_decoder_option, command, error_line, partial_exit

log = logging.getLogger(__name__)


def add_demo(sub: argparse._SubParsersAction) -> None:
    """The `demo` sub-command's options."""
    p = sub.add_parser("demo", help="export VGG16, classify the sample photographs, print latency")
    p.add_argument("--weights", default=None, help="weight file; default: a cached download, else random weights")
    p.add_argument("--images", default=None, help="folder of images (default: the repository's calib/)")
    p.add_argument("--out", default=None, help="where the demo writes its model (default: engines/demo)")
    p.add_argument("--backend", default="auto")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--strict", action="store_true", help="stop at the first unreadable image (default: report it, go on)")


@command("demo")
def _demo(args: argparse.Namespace) -> int:
    from ..apps.demo import format_report, run_demo

    report = run_demo(args.weights, args.images, out_dir=args.out, backend=args.backend,
                      top_k=args.top_k, batch_size=args.batch_size, strict=args.strict)
    print(format_report(report))
    return partial_exit(len(report.failed), len(report.failed) + len(report.results))


def add_classify(sub: argparse._SubParsersAction) -> None:
    """The `classify` sub-command's options."""
    p = sub.add_parser("classify", help="classify image files (and folders of them)")
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("--model", default=None, help="exported .onnx or a TensorRT .plan/.engine "
                                                 "(default: export --weights to the cache)")
    p.add_argument("--weights", default=None, help="weight file to export first when --model is not given")
    p.add_argument("--backend", default="auto")
    p.add_argument("--precision", default="as-given", choices=PRECISION_CHOICES, help=PRECISION_HELP)
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=8)
    add_decoder_option(p)
    p.add_argument("--strict", action="store_true",
                   help="stop at the first unreadable image (default: report each, go on, exit 3)")
    p.add_argument("--json", action="store_true", help="print JSON (each row names the decoder that ran)")


@command("classify")
def _classify(args: argparse.Namespace) -> int:
    from ..apps.batches import expand_images
    from ..apps.classify import Classifier
    from ..model.prepare import prepare_model
    from ..redact import redact_uri

    model = Path(args.model) if args.model else prepare_model(args.weights)[0]
    images = expand_images(args.images)
    rows, failed = [], 0
    with Classifier(model, args.backend, batch_size=args.batch_size, precision=args.precision,
                    decoder=args.decoder) as clf:
        decoder = clf.decoder_choice.kind
        for result in clf.classify_iter(images, k=args.top_k, strict=args.strict):
            if result.index == 0:  # once, with the first result (options checked by then), as an INFO line
                log.info("decoder %s: %s", decoder, clf.decoder_choice.reason)
            if not result.ok:
                failed += 1
                error_line(result.error)
                rows.append({"image": redact_uri(result.source), "error": redact_uri(result.error), "decoder": decoder})
            elif args.json:
                rows.append({"image": redact_uri(result.source), "top_k": [
                    {"index": p.index, "label": p.label, "score": p.score} for p in result.predictions],
                    "decoder": decoder})
            else:
                print(f"{redact_uri(result.source)}:\n" + "\n".join(
                    f"  {p.score:8.4f}  {p.label} ({p.index})" for p in result.predictions), flush=True)
    if args.json:
        print(json.dumps(rows, indent=2))
    return partial_exit(failed, len(images))


def add_compare(sub: argparse._SubParsersAction) -> None:
    """The `compare` sub-command's options."""
    p = sub.add_parser("compare", help="agreement of FP16/INT8 variants with FP32 on an image set")
    p.add_argument("models", nargs="+", help="NAME=PATH pairs or paths; the first is the reference")
    p.add_argument("--images", default=None,
                   help="folder of images (default: the repository's eval/, photos calibration never saw)")
    p.add_argument("--augment", action="store_true",
                   help="evaluate 84 documented views per image (flips, crops, scales, rotations, levels, JPEG)")
    p.add_argument("--calib", action="append", default=[], metavar="DIR",
                   help="calibration folder the images must not share images with (repeatable; INT8 sidecars "
                        "name theirs already)")
    p.add_argument("--allow-overlap", action="store_true",
                   help="only warn (default: refuse) when evaluation images are calibration images too")
    p.add_argument("--backend", default="auto")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--min-top1-agreement", type=float, default=None, metavar="PERCENT",
                   help="exit 1 when any variant's top-1 agreement is below this percentage")
    p.add_argument("--strict", action="store_true",
                   help="stop at the first unreadable image (default: report each, leave it out, exit 3)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--cpu-variants", action="store_true",  # openvino
                   help="compare every runnable CPU variant of the one FP32 model given with its FP32 run")


@command("compare")
def _compare(args: argparse.Namespace) -> int:
    from ..apps.compare import check_min_top1, compare_models, format_report, name_models
    from ..paths import EVAL_DIR

    if args.cpu_variants:  # CPU variants of one model, each against its FP32 run
        from ..apps.compare.cpu_variants import variant_accuracy

        if len(args.models) != 1:
            raise VggEdgeError(f"--cpu-variants takes one FP32 model; got {len(args.models)}: {args.models}")
        report = variant_accuracy(args.models[0], args.images or EVAL_DIR, batch_size=args.batch_size,
                                  augment=args.augment)
    else:
        report = compare_models(name_models(args.models), args.images or EVAL_DIR, backend=args.backend,
                                batch_size=args.batch_size, augment=args.augment, strict=args.strict,
                                calibration=args.calib, allow_overlap=args.allow_overlap)
        for failure in report.failed:
            error_line(failure["error"])
    print(report.to_json() if args.json else format_report(report))
    if args.min_top1_agreement is not None:
        check_min_top1(report, args.min_top1_agreement / 100.0)
    return partial_exit(len(report.failed), report.sources)


def add_bench(sub: argparse._SubParsersAction) -> None:
    """The `bench` sub-command's options."""
    p = sub.add_parser("bench", help="latency and throughput of a model on a backend")
    p.add_argument("--model", default=None, help="ONNX with spec, or an engine (default: the demo model)")
    p.add_argument("--weights", default=None, help="weights to export when --model is not given")
    p.add_argument("--backend", default="auto")
    p.add_argument("--precision", default="as-given", choices=PRECISION_CHOICES, help=PRECISION_HELP)
    p.add_argument("--end-to-end", action="store_true",
                   help="feed image files (JPEG decode + preprocess + inference) instead of decoded frames")
    add_decoder_option(p, "with --end-to-end: where the image files decode, auto, gpu (an error naming why when "
                          "it cannot) or cpu; default: $VGGEDGE_DECODER, else auto")
    p.add_argument("--batch", default="1,8", help="batch sizes: a list (1,8,32) or a sweep of powers of two (1-32)")
    p.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per batch size")
    p.add_argument("--duration", type=float, default=3.0, help="timed seconds per batch size")
    p.add_argument("--min-iters", type=int, default=10)
    p.add_argument("--images", default=None, help="folder of frames to preprocess (default: calib/)")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads (CPU backend)")
    p.add_argument("--json", default=None, metavar="FILE", help="write every iteration's timings here")
    p.add_argument("--plot", default=None, metavar="PREFIX", help="write PREFIX-latency.png and PREFIX-throughput.png")
    p.add_argument("--preprocess-only", action="store_true",
                   help="only time OpenCV preprocessing of 1920x1080 frames (1 frame and a batch of 32)")


@command("bench")
def _bench(args: argparse.Namespace) -> int:
    from ..apps import bench as b
    from ..model.prepare import prepare_model

    if args.preprocess_only:
        from ..apps.bench.preprocessing import bench_preprocess

        for r in bench_preprocess():
            print(f"{r.case:<20} threads {r.threads}: {r.median_ms:8.2f} ms ({r.frames_per_s:8.1f} frames/s)")
        return 0
    model = Path(args.model) if args.model else prepare_model(args.weights)[0]
    from ..runtime.base import RunnerOptions

    options = RunnerOptions(threads=args.threads) if args.threads is not None else None
    report = b.bench(model, args.backend, b.parse_batches(args.batch), warmup_s=args.warmup,
                     duration_s=args.duration, min_iters=args.min_iters, images=args.images,
                     progress=sys.stderr.isatty(), options=options, precision=args.precision,
                     end_to_end=args.end_to_end, decoder=args.decoder)
    print(b.format_report(report))
    if args.json:
        print(f"iterations written to {report.write_json(args.json)}")
    if args.plot:
        from ..apps.bench.plots import plot_report

        print("charts: " + ", ".join(str(p) for p in plot_report(report, args.plot)))
    return 0
