"""The one exception root of vggedge and its subclasses.

Every message says what went wrong, what was received, what was expected and,
where it helps, how to fix it. The CLI prints the message without a traceback.
"""
from __future__ import annotations


class VggEdgeError(Exception):
    """Root of every error vggedge raises on purpose."""


class ConfigError(VggEdgeError, ValueError):
    """An option or option combination is invalid (e.g. pooling with include_top)."""


class WeightsError(VggEdgeError):
    """A weight file is missing, unreadable, or has a missing key / wrong shape."""


class DownloadError(VggEdgeError):
    """A download failed, was truncated, or its hash did not match."""


class ImageError(VggEdgeError):
    """An image file is unreadable, empty, or has an unsupported layout."""


class ModelError(VggEdgeError):
    """An ONNX model or its spec sidecar is missing, invalid or inconsistent."""


class InputError(VggEdgeError, ValueError):
    """A tensor fed to a runner has the wrong name, dtype or shape."""


class BackendUnavailable(VggEdgeError):
    """A requested backend cannot run on this machine (missing package, no GPU, ...)."""


class EngineMismatch(VggEdgeError):
    """A built engine does not match this machine or model; the message says how to rebuild."""


class CalibrationError(VggEdgeError):
    """A calibration set is empty, unreadable or unusable."""


class OutputError(VggEdgeError):
    """An output failed while being written (a full disk, a file or folder gone, a sink that stopped).

    ``output`` is the output's name as shown (credentials redacted); the message names it and the OS error.
    """

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


class OutputClosed(OutputError):
    """The reader of an output went away (a closed pipe, EPIPE: ``vggedge ... | head -1``).

    Not a failure: the command stops quietly with status 0, as Unix tools do when their reader exits.
    """


# Exit statuses of the command line (documented in the README, "Errors and exit codes").
EXIT_OK = 0  #: everything succeeded
EXIT_ERROR = 1  #: a VggEdgeError stopped the command; its message names the cause
EXIT_USAGE = 2  #: the command line itself was invalid (argparse)
EXIT_PARTIAL = 3  #: the job finished, but some inputs failed (each reported); results for the rest were kept
EXIT_INTERRUPTED = 130  #: stopped by Ctrl-C / SIGINT after cleaning up
