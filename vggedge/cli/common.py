"""What every command module shares: the handler registry, option groups, argument types and exit summaries."""
from __future__ import annotations

import argparse
import sys
from typing import Callable

from ..errors import EXIT_OK, EXIT_PARTIAL

Handler = Callable[[argparse.Namespace], int]
COMMANDS: dict[str, Handler] = {}


def command(name: str) -> Callable[[Handler], Handler]:
    """Register a handler for a sub-command."""
    def wrap(fn: Handler) -> Handler:
        COMMANDS[name] = fn
        return fn
    return wrap


def ints(names: str, example: str) -> Callable[[str], tuple[int, ...]]:
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


shape = ints("H,W,C", "224,224,3")


PRECISION_HELP = ("which artefact beside the model runs: as-given (this file, or an engine built from it), "
                  "auto (the fastest built here), fp32, fp16 or int8")
PRECISION_CHOICES = ["as-given", "auto", "fp32", "fp16", "int8"]


DECODER_HELP = ("where image files decode: auto (the GPU on a GPU runner with nvImageCodec and the CUDA kernels, "
                "else the CPU decode pool), gpu (an error naming why when it cannot) or cpu; "
                "default: $VGGEDGE_DECODER, else auto")


def add_decoder_option(p: argparse.ArgumentParser, help: str = DECODER_HELP) -> None:
    """``--decoder auto|gpu|cpu``; unset (None) leaves the choice to ``VGGEDGE_DECODER``, then auto."""
    p.add_argument("--decoder", choices=["auto", "gpu", "cpu"], default=None, help=help)


def error_line(message: object) -> None:
    """Print ``vggedge: error: MESSAGE`` on stderr, credentials in any URI it holds redacted."""
    from ..redact import redact_uri

    print(f"vggedge: error: {redact_uri(message)}", file=sys.stderr, flush=True)


def partial_exit(failed: int, total: int) -> int:
    """EXIT_PARTIAL (with a summary line) when some inputs failed, else EXIT_OK."""
    if not failed:
        return EXIT_OK
    kept = "results for the others were kept" if failed < total else "no results"
    error_line(f"{failed} of {total} images could not be read (each named above); {kept}")
    return EXIT_PARTIAL


def add_model_options(p: argparse.ArgumentParser) -> None:
    """The architecture options of `export` (weights file, top, classes, input shape, pooling)."""
    p.add_argument("--weights", default=None,
                   help="weight file (.npz, .h5, .weights.h5, .keras, .pth) or random[:SEED] (default: random)")
    p.add_argument("--include-rescaling", action=argparse.BooleanOptionalAction, default=None,
                   help="divide pixels by 255 inside the graph (Keras-CV option; default: a .keras file's, else no)")
    p.add_argument("--include-top", action=argparse.BooleanOptionalAction, default=None,
                   help="keep the fully connected classifier (default: a .keras file's, else yes)")
    p.add_argument("--num-classes", type=int, default=None, help="default: a .keras file's, else 1000")
    p.add_argument("--input-shape", type=shape, default=None, metavar="H,W,C",
                   help="default: a .keras file's, else 224,224,3")
    p.add_argument("--pooling", choices=["avg", "max"], default=None)
    p.add_argument("--classifier-activation", choices=["softmax", "none"], default=None)
    p.add_argument("--name", default=None)


def add_preprocessing_options(p: argparse.ArgumentParser, what: str) -> None:
    """The `preprocessing` option group; `what` ends its description."""
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


def preprocessing_choice(args: argparse.Namespace):  # -> PreprocessingChoice
    """The preprocessing options as the library's PreprocessingChoice."""
    from ..preprocessing_args import PreprocessingChoice

    return PreprocessingChoice(preset=args.preprocessing, scale=args.scale, mean=args.mean, std=args.std,
                               mean_std_range=args.mean_std_range, channel_order=args.channel_order,
                               resize=args.resize, resize_shorter=args.resize_shorter,
                               interpolation=args.interpolation)
