"""`export`, `import-onnx`, `info` and `weights`: making, importing and inspecting models."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import (PRECISION_CHOICES, PRECISION_HELP, add_model_options, add_preprocessing_options, command,
                     preprocessing_choice)


def add_export(sub: argparse._SubParsersAction) -> None:
    """The `export` sub-command's options."""
    p = sub.add_parser("export", help="weights -> ONNX model + spec sidecar")
    add_model_options(p)
    add_preprocessing_options(p, "the weights expect (required for Keras 3 files)")
    p.add_argument("--out", required=True, help="output .onnx path (the spec goes beside it)")


@command("export")
def _export(args: argparse.Namespace) -> int:
    from ..model.export import export_options, export_vgg16

    weights = args.weights or "random"
    options = export_options(weights, include_rescaling=args.include_rescaling, include_top=args.include_top,
                             num_classes=args.num_classes, input_shape=args.input_shape, pooling=args.pooling,
                             classifier_activation=args.classifier_activation, name=args.name)
    stated, order = preprocessing_choice(args).for_export()
    done = export_vgg16(weights, args.out, options, channel_order=order, preprocessing=stated)
    print(f"wrote {done.onnx_path} and {done.spec_path}")
    print(f"preprocessing: {done.spec.preprocessing.describe()}")
    return 0


def add_import_onnx(sub: argparse._SubParsersAction) -> None:
    """The `import-onnx` sub-command's options."""
    p = sub.add_parser("import-onnx", help="write the spec for your own VGG16-family ONNX file")
    p.add_argument("onnx")
    add_preprocessing_options(p, "the model expects (required: a preset, a file or options)")
    p.add_argument("--out", default=None, help="copy the model here (default: write the spec beside it)")


@command("import-onnx")
def _import_onnx(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..model.foreign import import_onnx
    from ..spec import spec_path_for

    preprocessing = preprocessing_choice(args).resolve()
    if preprocessing is None:
        raise ConfigError("import-onnx: say what input the model expects: --preprocessing PRESET|FILE.json "
                          "(caffe-rgb, caffe-bgr, torchvision, raw, unit, keras-rescaling, tf) and/or "
                          "--scale/--mean/--std/--channel-order/--resize")
    path, spec = import_onnx(args.onnx, preprocessing, args.out)
    print(f"{path}: {spec.layout} {spec.height}x{spec.width}, {spec.num_classes} classes ({spec.output_kind}); "
          f"spec written to {spec_path_for(path)}")
    print(f"preprocessing: {spec.preprocessing.describe()}")
    return 0


def add_info(sub: argparse._SubParsersAction) -> None:
    """The `info` sub-command's options."""
    p = sub.add_parser("info", help="versions and usable backends; with --model, what exists for it and what would run")
    p.add_argument("--model", default=None, help="list the ONNX variants, engines and measured CPU variant tables of this model")
    p.add_argument("--backend", default="auto")
    p.add_argument("--precision", default="as-given", choices=PRECISION_CHOICES, help=PRECISION_HELP)
    p.add_argument("--json", action="store_true")


@command("info")
def _info(args: argparse.Namespace) -> int:
    from ..apps.info import format_info, format_model_info, info, model_info

    if args.model:
        data = model_info(args.model, args.backend, args.precision)
        print(json.dumps(data, indent=2) if args.json else format_model_info(data))
        return 0
    data = info()
    print(json.dumps(data, indent=2) if args.json else format_info(data))
    return 0


def add_weights(sub: argparse._SubParsersAction) -> None:
    """The `weights` sub-command's options."""
    p = sub.add_parser("weights", help="published weight files")
    wsub = p.add_subparsers(dest="weights_command", required=True)
    d = wsub.add_parser("download", help="download and hash-verify a published weight file")
    d.add_argument("name", choices=["keras", "torchvision", "npz"])
    d.add_argument("--dest", default=None, help="folder (default: the vggedge cache)")
    d.add_argument("--url", default=None, help="mirror URL to download from instead")
    d.add_argument("--sha256", default=None, help="expected sha256 (pins files with no published hash)")
    d.add_argument("--no-progress", action="store_true")


@command("weights")
def _weights(args: argparse.Namespace) -> int:
    from ..model.weights.download import download

    path = download(args.name, Path(args.dest) if args.dest else None, url=args.url,
                    expected_sha256=args.sha256, progress=not args.no_progress)
    print(path)
    return 0
