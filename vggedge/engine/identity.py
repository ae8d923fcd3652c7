"""The engine sidecar (``engines/<name>.plan`` -> ``engines/<name>.engine.json``) and its checks.

A TensorRT plan only runs with the TensorRT major.minor and the GPU it was built
for. The sidecar records what it was built from and for; :func:`check_identity`
compares it with this machine and the request before TensorRT ever sees the plan,
and lists every difference with the command that rebuilds it. :func:`gpu_identity`
says which GPU this machine has (cuda-python or pycuda, imported lazily, no context).
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from ..atomic import write_text_atomic
from ..errors import BackendUnavailable, ConfigError, EngineMismatch, ModelError
from ..spec import ModelSpec, checked_fields
from ..version import __version__
from .flags import TrtVersion, check_batch, check_precision

IDENTITY_VERSION = 1
SIDECAR_SUFFIX = ".engine.json"
Batch = tuple[int, int, int]


def sidecar_path(plan_path: Union[str, Path]) -> Path:
    """``engines/x.plan`` -> ``engines/x.engine.json``."""
    plan_path = Path(plan_path)
    return plan_path.with_name(plan_path.stem + SIDECAR_SUFFIX)


def normalise_cc(cc: Union[str, tuple[int, int]]) -> str:
    """Compute capability as ``"8.7"`` from ``"8.7"``, ``(8, 7)``, ``"sm87"`` or ``"sm_87"``."""
    if isinstance(cc, (tuple, list)) and len(cc) == 2:
        return f"{int(cc[0])}.{int(cc[1])}"
    text = str(cc).strip().lower().removeprefix("sm").lstrip("_")
    if re.fullmatch(r"\d+\.\d+", text):
        return text
    if re.fullmatch(r"\d{2,3}", text):
        return f"{text[:-1]}.{text[-1]}"
    raise ConfigError(f"compute capability {cc!r} is not understood; expected e.g. '8.7', (8, 7) or 'sm87'")


def gpu_slug(gpu_name: str) -> str:
    """A file-name-safe GPU name: ``"NVIDIA GeForce RTX 4090"`` -> ``"geforce-rtx-4090"``."""
    slug = re.sub(r"[^a-z0-9]+", "-", gpu_name.lower()).strip("-")
    slug = re.sub(r"^nvidia-", "", slug)
    return slug or "gpu"


def engine_filename(model_sha256: str, precision: str, batch: Batch, trt_version: str, gpu_name: str,
                    cc: Union[str, tuple[int, int]], *, name: str = "vgg16") -> str:
    """``vgg16-<sha8>-fp16-b1-8-32-trt10.3-sm87-orin.plan``: every field that makes a plan unportable."""
    lo, opt, hi = check_batch(batch)
    short = TrtVersion.parse(trt_version).short
    sm = "sm" + normalise_cc(cc).replace(".", "")
    stem = re.sub(r"[^A-Za-z0-9_.]+", "-", name).strip("-") or "model"
    precision = check_precision(precision)
    return f"{stem}-{model_sha256[:8]}-{precision}-b{lo}-{opt}-{hi}-trt{short}-{sm}-{gpu_slug(gpu_name)}.plan"


def calibration_details(method: str, calib_sha256: str, images: int) -> dict[str, Any]:
    """The calibration record kept for INT8 engines (method, calibration-set hash, image count)."""
    return {"method": method, "calib_sha256": calib_sha256, "images": int(images)}


def rebuild_command(model_path: Optional[Union[str, Path]], precision: str, batch: Batch) -> str:
    """The exact ``vggedge build`` command that makes a plan for this machine."""
    model = shlex.quote(str(model_path)) if model_path else "<model.onnx>"
    lo, opt, hi = batch
    return f"vggedge build --model {model} --precision {precision} --batch {lo},{opt},{hi}"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def _vggedge_version() -> str:
    return __version__


@dataclass(frozen=True)
class EngineIdentity:
    """What a plan was built from and for; saved as JSON beside the plan."""

    model_sha256: str
    precision: str
    batch: Batch
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    spec: ModelSpec = field(default_factory=ModelSpec)
    calibration: Optional[dict[str, Any]] = None
    model_path: Optional[str] = None
    created_at: str = field(default_factory=_now)
    vggedge_version: str = field(default_factory=_vggedge_version)

    def __post_init__(self) -> None:
        check_precision(self.precision)
        TrtVersion.parse(self.tensorrt_version)
        object.__setattr__(self, "batch", check_batch(self.batch))
        object.__setattr__(self, "compute_capability", normalise_cc(self.compute_capability))

    def filename(self) -> str:
        """The plan file name this identity keys to."""
        return engine_filename(self.model_sha256, self.precision, self.batch, self.tensorrt_version,
                               self.gpu_name, self.compute_capability, name=self.spec.name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, with a format version."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data.update(batch=list(self.batch), spec=self.spec.to_dict(), identity_version=IDENTITY_VERSION)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> "EngineIdentity":
        """Inverse of :meth:`to_dict`; unknown or missing keys are a ModelError."""
        data = checked_fields(cls, data, source, "engine sidecar", ("identity_version", IDENTITY_VERSION))
        try:
            if isinstance(data.get("spec"), dict):
                data["spec"] = ModelSpec.from_dict(data["spec"], source=f"{source} (spec)")
            data["batch"] = tuple(data.get("batch", ()))
            return cls(**data)
        except (TypeError, ConfigError) as exc:
            raise ModelError(f"{source}: engine sidecar is invalid ({exc})") from None

    def save(self, plan_path: Union[str, Path]) -> Path:
        """Write the sidecar beside ``plan_path`` (atomically: complete or absent) and return its path."""
        return write_text_atomic(sidecar_path(plan_path), json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, plan_path: Union[str, Path]) -> "EngineIdentity":
        """Read the sidecar of ``plan_path``; a missing one is an EngineMismatch saying how to rebuild."""
        path = sidecar_path(plan_path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise EngineMismatch(
                f"{plan_path}: no engine sidecar at {path}, so it cannot be checked against this machine. "
                "Rebuild it with: vggedge build --model <model.onnx> --precision <fp32|fp16|int8> --batch MIN,OPT,MAX"
            ) from None
        except json.JSONDecodeError as exc:
            raise ModelError(f"{path}: engine sidecar is not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ModelError(f"{path}: engine sidecar must be a JSON object")
        return cls.from_dict(data, source=str(path))


def _differences(identity: EngineIdentity, model_sha256: Optional[str], trt_version: str, gpu_name: str,
                 compute_capability: str, precision: Optional[str],
                 batch: Union[Batch, int, None]) -> list[str]:
    """One line per field that differs, each naming the field and both values."""
    found = []
    if model_sha256 is not None and model_sha256 != identity.model_sha256:
        found.append(f"model sha256: built from {identity.model_sha256}, the model given has {model_sha256}")
    built, here = TrtVersion.parse(identity.tensorrt_version), TrtVersion.parse(trt_version)
    if built.short != here.short:
        found.append(f"TensorRT version: built with {identity.tensorrt_version}, this machine has {trt_version} "
                     "(plans are not portable across TensorRT versions)")
    if gpu_slug(gpu_name) != gpu_slug(identity.gpu_name):
        found.append(f"GPU name: built for {identity.gpu_name}, this machine has {gpu_name}")
    if normalise_cc(compute_capability) != identity.compute_capability:
        found.append(f"compute capability: built for {identity.compute_capability}, "
                     f"this machine has {normalise_cc(compute_capability)}")
    if precision is not None and check_precision(precision) != identity.precision:
        found.append(f"precision: built for {identity.precision}, requested {precision}")
    lo, opt, hi = identity.batch
    if isinstance(batch, int) and not lo <= batch <= hi:
        found.append(f"batch size: built for {lo}..{hi}, requested {batch}")
    elif isinstance(batch, tuple) and check_batch(batch) != identity.batch:
        found.append(f"batch profile: built for {lo},{opt},{hi}, requested {','.join(map(str, batch))}")
    return found


def check_identity(identity: EngineIdentity, *, model_sha256: Optional[str], trt_version: str, gpu_name: str,
                   compute_capability: Union[str, tuple[int, int]], precision: Optional[str] = None,
                   batch: Union[Batch, int, None] = None, plan_path: Optional[Union[str, Path]] = None,
                   model_path: Optional[Union[str, Path]] = None) -> None:
    """Raise EngineMismatch listing every field in which the plan differs from this machine/request.

    ``model_sha256=None`` skips the model check; ``batch`` is a (MIN, OPT, MAX) profile that
    must match exactly, or one batch size that must lie within the built range.
    """
    found = _differences(identity, model_sha256, trt_version, gpu_name, normalise_cc(compute_capability),
                         precision, batch)
    if not found:
        return
    want = identity.batch
    if isinstance(batch, tuple):
        want = check_batch(batch)
    elif isinstance(batch, int):
        want = (min(want[0], batch), want[1], max(want[2], batch))
    command = rebuild_command(model_path or identity.model_path, precision or identity.precision, want)
    lines = "\n".join(f"  - {line}" for line in found)
    raise EngineMismatch(f"{plan_path or 'engine'} cannot be used here; it differs in:\n{lines}\n"
                         f"Rebuild it on this machine with:\n  {command}")


def _gpu_from_cuda_python(device: int) -> tuple[str, str]:
    try:
        from cuda.bindings import driver  # cuda-python >= 12.6
    except ImportError:
        from cuda import cuda as driver  # older cuda-python

    def ok(result: Any) -> Any:  # cuda-python returns (CUresult, value...)
        if result[0] != driver.CUresult.CUDA_SUCCESS:
            raise RuntimeError(f"CUDA driver error {result[0]}")
        return result[1] if len(result) > 1 else None

    ok(driver.cuInit(0))
    dev = ok(driver.cuDeviceGet(device))
    name = bytes(ok(driver.cuDeviceGetName(256, dev))).split(b"\0", 1)[0].decode()
    attr = driver.CUdevice_attribute
    cc = [ok(driver.cuDeviceGetAttribute(getattr(attr, f"CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_{part}"), dev))
          for part in ("MAJOR", "MINOR")]
    return name, f"{cc[0]}.{cc[1]}"


def _gpu_from_pycuda(device: int) -> tuple[str, str]:
    import pycuda.driver as cuda  # never pycuda.autoinit: no context is created

    cuda.init()
    major, minor = cuda.Device(device).compute_capability()
    return str(cuda.Device(device).name()), f"{major}.{minor}"


def gpu_identity(device: int = 0) -> tuple[str, str]:
    """(GPU name, compute capability "8.7") via cuda-python or pycuda, without creating a CUDA context."""
    reasons = []
    for label, probe in (("cuda-python", _gpu_from_cuda_python), ("pycuda", _gpu_from_pycuda)):
        try:
            return probe(device)
        except ImportError:
            reasons.append(f"{label} is not installed")
        except Exception as exc:
            reasons.append(f"{label}: {exc}")
    raise BackendUnavailable(f"cannot identify the GPU ({'; '.join(reasons)}); install pycuda "
                             "(pip install 'vggedge[gpu]') on a machine with an NVIDIA GPU")
