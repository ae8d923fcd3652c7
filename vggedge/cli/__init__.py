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

from ..errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, OutputClosed, VggEdgeError
from ..signals import sigterm_as_interrupt
from . import batch, build, inference, models, stream, tune
from .common import COMMANDS, command, error_line

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
    """Parse, dispatch, and turn errors into one line and an exit status: VggEdgeError or OSError 1,
    Ctrl-C or SIGTERM 130, a closed stdout or pipe (``| head -1``) 0, quietly. Credentials in URIs never show."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter("vggedge: %(levelname)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, handlers=[handler])
    try:
        from ..env import check as check_environment

        check_environment()  # environment overrides are refused before any work starts
        with sigterm_as_interrupt():  # `kill` stops every command as Ctrl-C does: temporaries removed, exit 130
            status = COMMANDS[args.command](args)
        sys.stdout.flush()  # a reader that left shows here, not in the interpreter's last flush
        return status
    except (BrokenPipeError, OutputClosed):  # the reader left (`vggedge classify ... | head -1`): stop quietly
        _end_quietly()
        return EXIT_OK
    except (VggEdgeError, OSError) as exc:
        log.debug("traceback of the error below", exc_info=True)
        error_line(exc)
        return EXIT_ERROR
    except KeyboardInterrupt:  # raised after every `finally` below has removed its temporaries
        print("vggedge: interrupted; partial files were removed and finished ones kept", file=sys.stderr)
        return EXIT_INTERRUPTED


class RedactingFormatter(logging.Formatter):
    """Log lines with credentials in URIs replaced by ``***`` (vggedge/redact.py)."""

    def format(self, record: logging.LogRecord) -> str:
        from ..redact import redact_uri

        return redact_uri(super().format(record))


def _end_quietly() -> None:
    """Flush what stdout still holds; when its reader has left, point it at /dev/null so the interpreter's
    final flush does not raise again ("Exception ignored ... BrokenPipeError"; Python's documented fix)."""
    import os

    try:
        sys.stdout.flush()
        return
    except (OSError, ValueError):
        pass
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
