"""`vggedge` command line: argument parsing and printing only; the work lives in the library."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Callable, Sequence

from .errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL, VggEdgeError

log = logging.getLogger("vggedge")
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str):
    """Register a handler for a sub-command."""
    def wrap(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        COMMANDS[name] = fn
        return fn
    return wrap


def _ints(names: str, example: str) -> Callable[[str], tuple[int, ...]]:
    """An argparse type for exactly ``len(names.split(','))`` comma-separated integers."""
    count = len(names.split(","))

    def parse(text: str) -> tuple[int, ...]:
        try:
            values = tuple(int(v) for v in text.split(","))
        except ValueError:
            values = ()
        if len(values) != count:
            raise argparse.ArgumentTypeError(f"expected {names} such as {example}; got {text!r}")
        return values
    return parse


_shape = _ints("H,W,C", "224,224,3")
_batch = _ints("MIN,OPT,MAX", "1,8,32")


PRECISION_HELP = ("which artefact beside the model runs: as-given (this file, or an engine built from it), "
                  "auto (the fastest built here), fp32, fp16 or int8")
PRECISION_CHOICES = ["as-given", "auto", "fp32", "fp16", "int8"]


def _precisions(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


def _partial(failed: int, total: int) -> int:
    """EXIT_PARTIAL (with a summary line) when some inputs failed, else EXIT_OK."""
    if not failed:
        return EXIT_OK
    kept = "results for the others were kept" if failed < total else "no results"
    print(f"vggedge: error: {failed} of {total} images could not be read (each named above); {kept}",
          file=sys.stderr)
    return EXIT_PARTIAL


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", default=None,
                   help="weight file (.npz, .h5, .weights.h5, .keras, .pth) or random[:SEED] (default: random)")
    p.add_argument("--include-rescaling", action=argparse.BooleanOptionalAction, default=None,
                   help="divide pixels by 255 inside the graph (Keras-CV option; default: a .keras file's, else no)")
    p.add_argument("--include-top", action=argparse.BooleanOptionalAction, default=None,
                   help="keep the fully connected classifier (default: a .keras file's, else yes)")
    p.add_argument("--num-classes", type=int, default=None, help="default: a .keras file's, else 1000")
    p.add_argument("--input-shape", type=_shape, default=None, metavar="H,W,C",
                   help="default: a .keras file's, else 224,224,3")
    p.add_argument("--pooling", choices=["avg", "max"], default=None)
    p.add_argument("--classifier-activation", choices=["softmax", "none"], default=None)
    p.add_argument("--name", default=None)


def _add_preprocessing_options(p: argparse.ArgumentParser, what: str) -> None:
    g = p.add_argument_group("preprocessing", f"what input {what} (options override the preset or file)")
    g.add_argument("--preprocessing", default=None, metavar="PRESET|FILE.json",
                   help="caffe-rgb, caffe-bgr, torchvision, raw, unit (pixels/255), keras-rescaling (the same), "
                        "tf (pixels/127.5 - 1), or a JSON file holding a spec or its preprocessing")
    g.add_argument("--scale", default=None, help="pixel multiplier: a number or a fraction such as 1/255")
    g.add_argument("--mean", default=None, metavar="M1,M2,M3", help="subtracted after scaling, in channel order")
    g.add_argument("--std", default=None, metavar="S1,S2,S3", help="divides after the mean, in channel order")
    g.add_argument("--mean-std-range", default=None, metavar="0..1|0..255",
                   help="the form --mean/--std are written in: 0..1 (for pixels/255, as torchvision) or 0..255 "
                        "(pixel units); default: the units of pixel * scale")
    g.add_argument("--channel-order", default=None, metavar="RGB|BGR",
                   help="input channel order of the model (export: conv1_1 is rewired when the weights expect "
                        "the other order)")
    g.add_argument("--resize", default=None, metavar="direct|shorter_crop")
    g.add_argument("--resize-shorter", default=None, metavar="N", help="shorter side before the centre crop")
    g.add_argument("--interpolation", default=None, metavar="linear|area|cubic|nearest")


def _preprocessing_choice(args: argparse.Namespace):
    from .preprocessing_args import PreprocessingChoice

    return PreprocessingChoice(preset=args.preprocessing, scale=args.scale, mean=args.mean, std=args.std,
                               mean_std_range=args.mean_std_range, channel_order=args.channel_order,
                               resize=args.resize, resize_shorter=args.resize_shorter,
                               interpolation=args.interpolation)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (also used by the tests)."""
    parser = argparse.ArgumentParser(prog="vggedge", description="VGG16 inference for edge and server GPUs and CPUs")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="export VGG16, classify the sample photographs, print latency")
    p.add_argument("--weights", default=None, help="weight file; default: a cached download, else random weights")
    p.add_argument("--images", default=None, help="folder of images (default: the repository's calib/)")
    p.add_argument("--out", default=None, help="where the demo writes its model (default: engines/demo)")
    p.add_argument("--backend", default="auto")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--strict", action="store_true", help="stop at the first unreadable image (default: report it, go on)")

    p = sub.add_parser("export", help="weights -> ONNX model + spec sidecar")
    _add_model_options(p)
    _add_preprocessing_options(p, "the weights expect (required for Keras 3 files)")
    p.add_argument("--out", required=True, help="output .onnx path (the spec goes beside it)")

    p = sub.add_parser("classify", help="classify image files (and folders of them)")
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("--model", default=None, help="exported .onnx or a TensorRT .plan/.engine "
                                                 "(default: export --weights to the cache)")
    p.add_argument("--weights", default=None, help="weight file to export first when --model is not given")
    p.add_argument("--backend", default="auto")
    p.add_argument("--precision", default="as-given", choices=PRECISION_CHOICES, help=PRECISION_HELP)
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--strict", action="store_true",
                   help="stop at the first unreadable image (default: report each, go on, exit 3)")
    p.add_argument("--json", action="store_true", help="print JSON")

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

    p = sub.add_parser("import-onnx", help="write the spec for your own VGG16-family ONNX file")
    p.add_argument("onnx")
    _add_preprocessing_options(p, "the model expects (required: a preset, a file or options)")
    p.add_argument("--out", default=None, help="copy the model here (default: write the spec beside it)")

    p = sub.add_parser("bench", help="latency and throughput of a model on a backend")
    p.add_argument("--model", default=None, help="ONNX with spec, or an engine (default: the demo model)")
    p.add_argument("--weights", default=None, help="weights to export when --model is not given")
    p.add_argument("--backend", default="auto")
    p.add_argument("--precision", default="as-given", choices=PRECISION_CHOICES, help=PRECISION_HELP)
    p.add_argument("--end-to-end", action="store_true",
                   help="feed image files (JPEG decode + preprocess + inference) instead of decoded frames")
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
    p.add_argument("--max-bytes", type=int, default=256 * 2**20, help="larger files are recorded as errors")
    p.add_argument("--max-pixels", type=int, default=100_000_000, help="larger images are recorded as errors")
    p.add_argument("--ray-actors", type=int, default=None, help="inference actors (default: one per GPU, else 1)")
    p.add_argument("--ray-object-store-mb", type=int, default=1024, help="object-store memory Ray Data may fill")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")

    p = sub.add_parser("stream", help="classify camera / video streams (csi://, /dev/video0, rtsp://, http://, files)")
    p.add_argument("sources", nargs="+", metavar="URI",
                   help="csi://0, v4l2:///dev/video0, /dev/video0, 0, rtsp://..., http://..., clip.mp4, a folder or glob")
    p.add_argument("--model", default=None, help="exported .onnx (default: the demo model, exported if needed)")
    p.add_argument("--weights", default=None, help="weights to export when --model is not given")
    p.add_argument("--backend", default="auto")
    p.add_argument("--precision", default="auto", help="auto (fastest variant on the CPU), as-given, fp32, fp16, int8")
    p.add_argument("--batch-size", type=int, default=None, help="most frames per inference call (default: one per source)")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--every", type=int, default=1, metavar="N", help="classify every Nth frame of each source")
    p.add_argument("--pace", action="store_true", help="read files at their native frame rate, as if live")
    p.add_argument("--loop", action="store_true", help="restart files and image folders at their end")
    p.add_argument("--smoothing", type=float, default=0.0, metavar="SECONDS",
                   help="EMA time constant of the class scores (0: off)")
    p.add_argument("--input-width", type=int, default=None)
    p.add_argument("--input-height", type=int, default=None)
    p.add_argument("--input-rate", type=float, default=None, help="requested camera frame rate")
    p.add_argument("--read-timeout", type=float, default=5.0, help="seconds without a frame before reconnecting")
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many classified frames")
    p.add_argument("--json", default=None, metavar="FILE", help="JSON lines per classified frame ('-': stdout)")
    p.add_argument("--output", default=None, metavar="VIDEO", help="annotated video file (out.mp4)")
    p.add_argument("--serve", default=None, metavar="HOST:PORT", help="live web preview, e.g. 127.0.0.1:8080")

    p = sub.add_parser("info", help="versions and usable backends; with --model, what exists for it and what would run")
    p.add_argument("--model", default=None, help="list the ONNX variants, engines and measured CPU variant tables of this model")
    p.add_argument("--backend", default="auto")
    p.add_argument("--precision", default="as-given", choices=PRECISION_CHOICES, help=PRECISION_HELP)
    p.add_argument("--json", action="store_true")

    # --- tune (issue 12) ---
    p = sub.add_parser("tune", help="time each CPU variant of a model here and cache the fastest for precision=auto")
    p.add_argument("--model", required=True, help="FP32 .onnx (its INT8 files beside it are timed too)")
    p.add_argument("--batch-size", type=int, default=8, help="the batch size your app runs (default 8)")
    p.add_argument("--seconds", type=float, default=2.0, help="timed seconds per variant")
    p.add_argument("--threads", type=int, default=None, help="inference threads (default: the tuned choice)")
    p.add_argument("--force", action="store_true", help="measure again even when a cached table exists")
    p.add_argument("--json", action="store_true")
    # --- end tune ---

    p = sub.add_parser("weights", help="published weight files")
    wsub = p.add_subparsers(dest="weights_command", required=True)
    d = wsub.add_parser("download", help="download and hash-verify a published weight file")
    d.add_argument("name", choices=["keras", "torchvision", "npz"])
    d.add_argument("--dest", default=None, help="folder (default: the vggedge cache)")
    d.add_argument("--url", default=None, help="mirror URL to download from instead")
    d.add_argument("--sha256", default=None, help="expected sha256 (pins files with no published hash)")
    d.add_argument("--no-progress", action="store_true")
    return parser


@command("demo")
def _demo(args: argparse.Namespace) -> int:
    from .apps.demo import format_report, run_demo

    report = run_demo(args.weights, args.images, out_dir=args.out, backend=args.backend,
                      top_k=args.top_k, batch_size=args.batch_size, strict=args.strict)
    print(format_report(report))
    return _partial(len(report.failed), len(report.failed) + len(report.results))


@command("export")
def _export(args: argparse.Namespace) -> int:
    from .model.export import export_options, export_vgg16

    weights = args.weights or "random"
    options = export_options(weights, include_rescaling=args.include_rescaling, include_top=args.include_top,
                             num_classes=args.num_classes, input_shape=args.input_shape, pooling=args.pooling,
                             classifier_activation=args.classifier_activation, name=args.name)
    stated, order = _preprocessing_choice(args).for_export()
    done = export_vgg16(weights, args.out, options, channel_order=order, preprocessing=stated)
    print(f"wrote {done.onnx_path} and {done.spec_path}")
    print(f"preprocessing: {done.spec.preprocessing.describe()}")
    return 0


@command("classify")
def _classify(args: argparse.Namespace) -> int:
    from .apps.batches import expand_images
    from .apps.classify import Classifier
    from .model.prepare import prepare_model

    model = Path(args.model) if args.model else prepare_model(args.weights)[0]
    images = expand_images(args.images)
    rows, failed = [], 0
    with Classifier(model, args.backend, batch_size=args.batch_size, precision=args.precision) as clf:
        for result in clf.classify_iter(images, k=args.top_k, strict=args.strict):
            if not result.ok:
                failed += 1
                print(f"vggedge: error: {result.error}", file=sys.stderr, flush=True)
                rows.append({"image": str(result.source), "error": str(result.error)})
            elif args.json:
                rows.append({"image": str(result.source), "top_k": [
                    {"index": p.index, "label": p.label, "score": p.score} for p in result.predictions]})
            else:
                print(f"{result.source}:\n" + "\n".join(f"  {p.score:8.4f}  {p.label} ({p.index})"
                                                        for p in result.predictions), flush=True)
    if args.json:
        print(json.dumps(rows, indent=2))
    return _partial(failed, len(images))


@command("build")
def _build(args: argparse.Namespace) -> int:
    from .apps.build import build, format_report
    from .model.prepare import prepare_model

    model = Path(args.model) if args.model else prepare_model(args.weights)[0]
    from .paths import EVAL_DIR

    evaluation = None if args.eval == "none" else (args.eval or EVAL_DIR)
    report = build(model, args.precision, calib=args.calib, method=args.calib_method, batch=args.batch,
                   out_dir=args.out, fp16_io=args.fp16_io, workspace_gb=args.workspace_gb, evaluation=evaluation,
                   eval_augment=not args.eval_plain, allow_overlap=args.allow_overlap,
                   min_agreement=args.min_agreement, max_kept_layers=args.max_kept_layers)
    print(format_report(report))
    return 0


@command("compare")
def _compare(args: argparse.Namespace) -> int:
    from .apps.compare import check_min_top1, compare_models, format_report, name_models
    from .paths import EVAL_DIR

    if args.cpu_variants:  # CPU variants of one model, each against its FP32 run
        from .apps.cpu_variants import variant_accuracy

        if len(args.models) != 1:
            raise VggEdgeError(f"--cpu-variants takes one FP32 model; got {len(args.models)}: {args.models}")
        report = variant_accuracy(args.models[0], args.images or EVAL_DIR, batch_size=args.batch_size,
                                  augment=args.augment)
    else:
        report = compare_models(name_models(args.models), args.images or EVAL_DIR, backend=args.backend,
                                batch_size=args.batch_size, augment=args.augment, strict=args.strict,
                                calibration=args.calib, allow_overlap=args.allow_overlap)
        for failure in report.failed:
            print(f"vggedge: error: {failure['error']}", file=sys.stderr)
    print(report.to_json() if args.json else format_report(report))
    if args.min_top1_agreement is not None:
        check_min_top1(report, args.min_top1_agreement / 100.0)
    return _partial(len(report.failed), report.sources)


@command("import-onnx")
def _import_onnx(args: argparse.Namespace) -> int:
    from .errors import ConfigError
    from .model.foreign import import_onnx
    from .spec import spec_path_for

    preprocessing = _preprocessing_choice(args).resolve()
    if preprocessing is None:
        raise ConfigError("import-onnx: say what input the model expects: --preprocessing PRESET|FILE.json "
                          "(caffe-rgb, caffe-bgr, torchvision, raw, unit, keras-rescaling, tf) and/or "
                          "--scale/--mean/--std/--channel-order/--resize")
    path, spec = import_onnx(args.onnx, preprocessing, args.out)
    print(f"{path}: {spec.layout} {spec.height}x{spec.width}, {spec.num_classes} classes ({spec.output_kind}); "
          f"spec written to {spec_path_for(path)}")
    print(f"preprocessing: {spec.preprocessing.describe()}")
    return 0


@command("bench")
def _bench(args: argparse.Namespace) -> int:
    from .apps import bench as b
    from .model.prepare import prepare_model

    if args.preprocess_only:
        from .apps.bench_preprocess import bench_preprocess

        for r in bench_preprocess():
            print(f"{r.case:<20} threads {r.threads}: {r.median_ms:8.2f} ms ({r.frames_per_s:8.1f} frames/s)")
        return 0
    model = Path(args.model) if args.model else prepare_model(args.weights)[0]
    from .runtime.base import RunnerOptions

    options = RunnerOptions(threads=args.threads) if args.threads is not None else None
    report = b.bench(model, args.backend, b.parse_batches(args.batch), warmup_s=args.warmup,
                     duration_s=args.duration, min_iters=args.min_iters, images=args.images,
                     progress=sys.stderr.isatty(), options=options, precision=args.precision,
                     end_to_end=args.end_to_end)
    print(b.format_report(report))
    if args.json:
        print(f"iterations written to {report.write_json(args.json)}")
    if args.plot:
        from .apps.plots import plot_report

        print("charts: " + ", ".join(str(p) for p in plot_report(report, args.plot)))
    return 0


@command("stream")
def _stream(args: argparse.Namespace) -> int:
    from .model.prepare import prepare_model
    from .apps.stream import sigterm_as_interrupt, stream
    from .apps.stream_stats import format_summary
    from .video.sinks import JsonLinesSink, VideoFileSink

    model = Path(args.model) if args.model else prepare_model(args.weights)[0]
    run = stream(args.sources, model, backend=args.backend, precision=args.precision, batch_size=args.batch_size,
                 top_k=args.top_k, every=args.every, pace=args.pace, smoothing=args.smoothing,
                 max_frames=args.max_frames, width=args.input_width, height=args.input_height,
                 rate=args.input_rate, loop=args.loop, read_timeout=args.read_timeout)
    if args.json:
        run.sinks.append(JsonLinesSink(args.json))
    if args.output:
        run.sinks.append(VideoFileSink(args.output, len(run.sources), lambda i: run.sources[i].fps))
    if args.serve:
        from .video.server import PreviewServer, parse_address

        host, port = parse_address(args.serve)
        run.sinks.append(PreviewServer([s.uri for s in run.sources], run.stats, host, port).start())
        print(f"preview: {run.sinks[-1].url}", file=sys.stderr, flush=True)
    interrupted = False
    with sigterm_as_interrupt():
        try:
            for result in run:
                if not args.json:
                    best = result.top_k[0]
                    print(f"[{result.source}] #{result.frame}: {best.label} {best.score:.3f} "
                          f"({result.latency_s * 1000:.0f} ms)", flush=True)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            run.close()
    print(format_summary(run.summary()), file=sys.stderr)
    return 130 if interrupted else 0



@command("batch")
def _batch_job(args: argparse.Namespace) -> int:
    from .apps.batch import run as run_batch
    from .model.prepare import prepare_model

    model = Path(args.model) if args.model else prepare_model(args.weights)[0]
    summary = run_batch(args.inputs, out=args.out, model=model, engine=args.engine, address=args.address,
                        backend=args.backend, precision=args.precision, batch_size=args.batch_size,
                        top_k=args.top_k, features=args.features, resume=args.resume, overwrite=args.overwrite,
                        workers=args.workers, worker_kind=args.worker_kind, threads=args.threads,
                        max_bytes=args.max_bytes, max_pixels=args.max_pixels, ray_actors=args.ray_actors,
                        ray_object_store_mb=args.ray_object_store_mb,
                        progress=False if args.no_progress else None)
    print(json.dumps(summary.to_dict(), indent=2) if args.json else summary.format())
    return summary.exit_status


@command("info")
def _info(args: argparse.Namespace) -> int:
    from .apps.info import format_info, format_model_info, info, model_info

    if args.model:
        data = model_info(args.model, args.backend, args.precision)
        print(json.dumps(data, indent=2) if args.json else format_model_info(data))
        return 0
    data = info()
    print(json.dumps(data, indent=2) if args.json else format_info(data))
    return 0


# --- tune (issue 12) ---
@command("tune")
def _tune(args: argparse.Namespace) -> int:
    from .apps.tune import format_report, run_tune

    result = run_tune(args.model, batch_size=args.batch_size, seconds=args.seconds, force=args.force,
                      threads=args.threads)
    print(json.dumps(result.to_json(), indent=2) if args.json else format_report(args.model, result))
    return 0
# --- end tune ---


@command("weights")
def _weights(args: argparse.Namespace) -> int:
    from .model.weights.download import download

    path = download(args.name, Path(args.dest) if args.dest else None, url=args.url,
                    expected_sha256=args.sha256, progress=not args.no_progress)
    print(path)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, dispatch, and turn VggEdgeError into a one-line message and exit status 1 (Ctrl-C: 130)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="vggedge: %(levelname)s: %(message)s", stream=sys.stderr)
    try:
        from .env import check as check_environment

        check_environment()  # environment overrides are refused before any work starts
        return COMMANDS[args.command](args)
    except VggEdgeError as exc:
        print(f"vggedge: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:  # raised after every `finally` below has removed its temporaries
        print("vggedge: interrupted; partial files were removed and finished ones kept", file=sys.stderr)
        return EXIT_INTERRUPTED


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
