"""`vggedge` command line: argument parsing and printing only; the work lives in the library.

Each command group has its own module (`models`, `build`, `inference`, `tune`, `stream`, `batch`), holding
the command's parser block and its handler side by side; this module assembles the parser and turns
errors into exit statuses. Only argparse and the standard library are imported here: each handler imports
the library parts it needs when it runs.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from ..errors import EXIT_ERROR, EXIT_INTERRUPTED, VggEdgeError
from ..signals import sigterm_as_interrupt
from . import batch, build, inference, models, stream, tune
from .common import COMMANDS, command

__all__ = ["COMMANDS", "build_parser", "command", "main", "run"]

log = logging.getLogger("vggedge")

# The order of `vggedge --help`'s command list.
_PARSERS = (inference.add_demo, models.add_export, inference.add_classify, build.add_build, inference.add_compare,
            models.add_import_onnx, inference.add_bench, batch.add_batch, stream.add_stream, models.add_info,
            tune.add_tune, models.add_weights)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (also used by the tests)."""
    parser = argparse.ArgumentParser(prog="vggedge", description="VGG16 inference for edge and server GPUs and CPUs")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in _PARSERS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, dispatch, and turn VggEdgeError into a one-line message and exit status 1 (Ctrl-C, SIGTERM: 130)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="vggedge: %(levelname)s: %(message)s", stream=sys.stderr)
    try:
        from ..env import check as check_environment

        check_environment()  # environment overrides are refused before any work starts
        with sigterm_as_interrupt():  # `kill` stops every command as Ctrl-C does: temporaries removed, exit 130
            return COMMANDS[args.command](args)
    except VggEdgeError as exc:
        print(f"vggedge: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:  # raised after every `finally` below has removed its temporaries
        print("vggedge: interrupted; partial files were removed and finished ones kept", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # stdout closed by the reader (`vggedge classify ... | head -1`): stop quietly
        _silence_stdout()
        return EXIT_ERROR


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not raise again (Python's documented fix)."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
