"""`stream`: classify camera and video streams."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import add_decoder_option, command


def add_stream(sub: argparse._SubParsersAction) -> None:
    """The `stream` sub-command's options."""
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
    add_decoder_option(p, "where captured frames are preprocessed: auto (uploaded once and preprocessed on the GPU "
                          "on a GPU runner with the CUDA kernels, else on the CPU), gpu (an error naming why when "
                          "it cannot) or cpu; default: $VGGEDGE_DECODER, else auto")
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many classified frames")
    p.add_argument("--json", default=None, metavar="FILE", help="JSON lines per classified frame ('-': stdout)")
    p.add_argument("--output", default=None, metavar="VIDEO", help="annotated video file (out.mp4)")
    p.add_argument("--serve", default=None, metavar="HOST:PORT", help="live web preview, e.g. 127.0.0.1:8080")
    p.add_argument("--sink", action="append", default=[], metavar="URI",
                   help="another output by URI (repeatable): -, json://FILE, out.jsonl, out.mp4, http://HOST:PORT")


@command("stream")
def _stream(args: argparse.Namespace) -> int:
    from ..model.prepare import prepare_model
    from ..apps.stream import StreamOptions, stream
    from ..apps.stream.stats import format_summary
    from ..video.sinks import check_sink
    from ..video.sources import SourceOptions
    from ..signals import sigterm_as_interrupt

    # options are checked before the model is loaded, sinks before any frame: a bad value or path is an error
    StreamOptions(batch_size=args.batch_size, top_k=args.top_k, every=args.every, smoothing=args.smoothing,
                  max_frames=args.max_frames, decoder=args.decoder, source=SourceOptions(width=args.input_width, height=args.input_height,
                                                                   rate=args.input_rate,
                                                                   read_timeout=args.read_timeout))
    uris = ([f"json://{args.json}"] if args.json else []) + ([f"file://{args.output}"] if args.output else []) \
        + ([f"http://{args.serve}"] if args.serve else []) + list(args.sink)
    for uri in uris:
        check_sink(uri, len(args.sources))
    model = Path(args.model) if args.model else prepare_model(args.weights)[0]
    run = stream(args.sources, model, backend=args.backend, precision=args.precision, batch_size=args.batch_size,
                 top_k=args.top_k, every=args.every, pace=args.pace, smoothing=args.smoothing,
                 max_frames=args.max_frames, width=args.input_width, height=args.input_height,
                 rate=args.input_rate, loop=args.loop, read_timeout=args.read_timeout, decoder=args.decoder)
    try:
        for uri in uris:  # one switch on the URI picks each sink (video/sinks.py: open_sink)
            sink = run.add_sink(uri)
            if hasattr(sink, "url"):
                print(f"preview: {sink.url}", file=sys.stderr, flush=True)
    except BaseException:
        run.close()
        raise
    quiet = bool(args.json) or any(u in ("-", "json://-") for u in args.sink)  # JSON output: no text lines
    interrupted = False
    with sigterm_as_interrupt():
        try:
            for result in run:
                if not quiet:
                    best = result.top_k[0]
                    print(f"[{result.source}] #{result.frame}: {best.label} {best.score:.3f} "
                          f"({result.latency_s * 1000:.0f} ms)", flush=True)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            run.close()
    print(format_summary(run.summary()), file=sys.stderr)
    return 130 if interrupted else 0
