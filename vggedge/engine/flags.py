"""TensorRT version -> build flags, as pure functions (no ``tensorrt`` import).

Every decision about which enum members to touch lives here, so it can be tested
without TensorRT. The rules (bindings of the 8.5, 8.6, 10.x and 11.x branches and
the 10.x -> 11.x migration guide):

* ``NetworkDefinitionCreationFlag.EXPLICIT_BATCH``: needed for ONNX on 8.x,
  deprecated and ignored on 10.x (we do not set it), absent on 11.x.
* ``NetworkDefinitionCreationFlag.STRONGLY_TYPED``: absent on 8.x, opt-in on 10.x
  (set when the ONNX itself carries the precision: FP16 ONNX or Q/DQ INT8 ONNX),
  always on in 11.x (flag accepted but ignored; we set it there for clarity).
* ``BuilderFlag.FP16`` / ``BuilderFlag.INT8``: only for weakly typed 8.x/10.x
  builds (a precision flag on a strongly typed network is an error); removed in 11.x.
* ``BuilderFlag.VERSION_COMPATIBLE``: 8.6 and later. INT8 calibrators: before 11.
* INT8 Q/DQ weight storage (:func:`int8_weight_style`): int8 initializers ->
  DequantizeLinear on 10.x and 11.x (the explicit-quantization guide accepts
  pre-quantized weights when a DequantizeLinear sits before the layer); FP32
  weights -> QuantizeLinear -> DequantizeLinear on 8.x, whose parser is reported
  to refuse int8 constants into DequantizeLinear ("only activation types allowed").
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Union

from ..errors import ConfigError

PRECISIONS = ("fp32", "fp16", "int8")
DEFAULT_WORKSPACE_BYTES = 1 << 30
DEFAULT_BATCH = (1, 8, 32)
SUPPORTED = "8.5 and later 8.x, 10.x, 11.x"

_VERSION_RE = re.compile(r"^\s*v?(\d+)\.(\d+)(?:\.(\d+))?(?:\.\d+)*(?:[.+\-][0-9A-Za-z.+\-]*)?\s*$")


@dataclass(frozen=True, order=True)
class TrtVersion:
    """A TensorRT release: ``TrtVersion.parse("8.5.2.2") == TrtVersion(8, 5, 2)``."""

    major: int
    minor: int
    patch: int = 0

    @classmethod
    def parse(cls, text: Union[str, "TrtVersion"]) -> "TrtVersion":
        """Parse ``trt.__version__``-style text; garbage raises ConfigError."""
        if isinstance(text, TrtVersion):
            return text
        match = _VERSION_RE.match(str(text)) if isinstance(text, str) else None
        if match is None:
            raise ConfigError(
                f"TensorRT version {text!r} is not understood; expected MAJOR.MINOR[.PATCH[.BUILD]] "
                "such as '8.5.2.2', '10.3.0' or '11.4.1'")
        major, minor, patch = match.groups()
        return cls(int(major), int(minor), int(patch or 0))

    @property
    def short(self) -> str:
        """``major.minor``: the part that must match between a plan and its runtime."""
        return f"{self.major}.{self.minor}"

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


VersionLike = Union[str, TrtVersion]


def parse_version(text: VersionLike) -> TrtVersion:
    """Parse and check that vggedge supports this TensorRT release (ConfigError if not)."""
    version = TrtVersion.parse(text)
    if version < TrtVersion(8, 5) or version.major == 9:
        raise ConfigError(f"TensorRT {version} is not supported; vggedge supports {SUPPORTED}")
    return version


def check_precision(precision: str) -> str:
    """Return ``precision`` if it is one of PRECISIONS, else raise ConfigError listing them."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r} is unknown; choose one of {', '.join(PRECISIONS)}")
    return precision


def check_batch(batch: tuple[int, int, int]) -> tuple[int, int, int]:
    """Validate a (MIN, OPT, MAX) batch profile: positive integers with MIN <= OPT <= MAX."""
    try:
        lo, opt, hi = (int(b) for b in batch)
    except (TypeError, ValueError):
        raise ConfigError(f"batch profile must be three integers MIN,OPT,MAX, got {batch!r}") from None
    if lo < 1 or not lo <= opt <= hi:
        raise ConfigError(f"batch profile {lo},{opt},{hi} is invalid: need 1 <= MIN <= OPT <= MAX (e.g. 1,8,32)")
    return lo, opt, hi


def network_flags(version: VersionLike, precision: str, strongly_typed_onnx: bool) -> tuple[str, ...]:
    """Names of NetworkDefinitionCreationFlag members to set for this build."""
    v, precision = parse_version(version), check_precision(precision)
    if v.major == 8:
        return ("EXPLICIT_BATCH",)
    if v.major == 10:
        return ("STRONGLY_TYPED",) if strongly_typed_onnx else ()
    return ("STRONGLY_TYPED",)


def builder_flags(version: VersionLike, precision: str, strongly_typed: bool) -> tuple[str, ...]:
    """Names of BuilderFlag members that select the precision.

    ``strongly_typed`` says the ONNX carries its precision (the same flag given to
    :func:`network_flags`). 8.x cannot build strongly typed networks, so there the
    flags are always set (a Q/DQ ONNX on 8.x still needs INT8, plus FP16 for the
    layers left unquantized). Strongly typed 10.x and all of 11.x: none.
    """
    v, precision = parse_version(version), check_precision(precision)
    if v.major >= 11 or (v.major == 10 and strongly_typed):
        return ()
    return {"fp32": (), "fp16": ("FP16",), "int8": ("INT8", "FP16")}[precision]


def supports_version_compatible(version: VersionLike) -> bool:
    """``BuilderFlag.VERSION_COMPATIBLE`` and hardware compatibility levels exist (8.6+)."""
    return TrtVersion.parse(version) >= TrtVersion(8, 6)


def int8_weight_style(version: VersionLike) -> str:
    """The Q/DQ style (``vggedge.precision.int8.STYLES`` key) whose weight storage this TensorRT takes.

    ``"tensorrt"`` (int8 weights, a quarter of the FP32 size) on 10.x and 11.x;
    ``"tensorrt-fp32w"`` (FP32 weights behind a Q/DQ pair) on 8.x.
    """
    return "tensorrt-fp32w" if TrtVersion.parse(version).major < 10 else "tensorrt"


def calibrator_available(version: VersionLike) -> bool:
    """The implicit INT8 calibrator API exists (before 11; deprecated since 10.1)."""
    return TrtVersion.parse(version).major < 11


@dataclass(frozen=True)
class BuildPlan:
    """Every decision for one engine build, made before TensorRT is touched."""

    version: TrtVersion
    precision: str
    onnx_precision: str
    network_flags: tuple[str, ...]
    builder_flags: tuple[str, ...]
    workspace_bytes: int
    batch: tuple[int, int, int]

    @property
    def strongly_typed(self) -> bool:
        """Whether the network is created strongly typed."""
        return "STRONGLY_TYPED" in self.network_flags

    def describe(self) -> str:
        """One line for logs and the CLI."""
        typing = "strongly typed" if self.strongly_typed else "weakly typed"
        return (f"TensorRT {self.version}: {self.precision} engine from a {self.onnx_precision} ONNX, {typing}; "
                f"network flags: {', '.join(self.network_flags) or 'none'}; "
                f"builder flags: {', '.join(self.builder_flags) or 'none'}; "
                f"batch {self.batch[0]}/{self.batch[1]}/{self.batch[2]} (min/opt/max); "
                f"workspace {self.workspace_bytes / (1 << 20):.0f} MiB")


def make_plan(version: VersionLike, precision: str, *, onnx_precision: str = "fp32",
              batch: tuple[int, int, int] = DEFAULT_BATCH,
              workspace_bytes: int = DEFAULT_WORKSPACE_BYTES) -> BuildPlan:
    """Decide the flags for building a ``precision`` engine from an ``onnx_precision`` ONNX.

    Raises ConfigError for combinations that would silently give the wrong engine:
    a FP16/INT8 request that the ONNX cannot honour on this TensorRT.
    """
    v = parse_version(version)
    precision, onnx_precision = check_precision(precision), check_precision(onnx_precision)
    batch = check_batch(batch)
    if int(workspace_bytes) <= 0:
        raise ConfigError(f"workspace must be a positive number of bytes, got {workspace_bytes}")
    if onnx_precision not in ("fp32", precision):
        raise ConfigError(f"the ONNX carries {onnx_precision} but a {precision} engine was requested; "
                          f"build {onnx_precision} from this ONNX, or give the {precision} (or fp32) ONNX")
    carries = onnx_precision == precision != "fp32"
    if precision == "int8" and not carries:
        raise ConfigError("an int8 engine needs an explicitly quantized (Q/DQ) ONNX; quantize the model first "
                          "(implicit calibrators are deprecated since TensorRT 10.1 and gone in 11)")
    if v.major >= 11 and precision != "fp32" and not carries:
        raise ConfigError(f"TensorRT {v} is always strongly typed: a fp32 ONNX gives a fp32 engine. "
                          f"Give it the {precision} ONNX to get a {precision} engine")
    return BuildPlan(v, precision, onnx_precision, network_flags(v, precision, carries),
                     builder_flags(v, precision, carries), int(workspace_bytes), batch)


@dataclass(frozen=True)
class JetPack:
    """What one JetPack release ships (NVIDIA's release notes); docs/jetson.md's table is made from these."""

    release: str
    tensorrt: str
    cuda: str
    python: str  # the system Python that JetPack's TensorRT bindings are built for
    boards: str

    @property
    def runs_trt_backend(self) -> bool:
        """vggedge's TensorRT backend works here: a supported TensorRT, bindings for Python >= 3.9."""
        try:
            parse_version(self.tensorrt.rstrip("+"))
        except ConfigError:
            return False
        major, minor = (int(p) for p in self.python.split(".")[:2])
        return (major, minor) >= (3, 9)


JETPACK: tuple[JetPack, ...] = (
    JetPack("4.6.x", "8.2.1", "10.2", "3.6", "Nano, TX2, Xavier"),
    JetPack("5.1.x", "8.5.2", "11.4", "3.8", "Xavier, Orin"),
    JetPack("6.0", "8.6.2", "12.2", "3.10", "Orin"),
    JetPack("6.1 / 6.2", "10.3", "12.6", "3.10", "Orin"),
    JetPack("7.2.2+", "11.4.1+", "13.x", "3.12", "Orin, Thor"),
)


def jetpack_table() -> str:
    """The Markdown table of :data:`JETPACK` that docs/jetson.md cites (a test keeps the two equal)."""
    rows = ["| JetPack | TensorRT | CUDA | Python | boards | vggedge `trt` backend |", "|---|---|---|---|---|---|"]
    for jp in JETPACK:
        rows.append(f"| {jp.release} | {jp.tensorrt} | {jp.cuda} | {jp.python} | {jp.boards} | "
                    f"{'yes' if jp.runs_trt_backend else 'no'} |")
    return "\n".join(rows)
