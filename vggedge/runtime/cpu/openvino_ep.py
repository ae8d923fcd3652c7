"""onnxruntime's OpenVINO execution provider as a plugin (PyPI ``onnxruntime-ep-openvino``).

The plugin runs inside the stock onnxruntime (>= 1.23): its library is
registered once per process, lazily (the first time the CPU path asks for it),
its devices are listed with ``ort.get_ep_devices()`` and the CPU one is added to
a session with ``SessionOptions.add_provider_for_devices``. The plain CPU
provider stays the fallback for anything OpenVINO does not take.

The plugin is unregistered only when no session made with it is alive
(:func:`acquire`/:func:`release` count them; :func:`unregister` refuses
otherwise, and the exit hook only unregisters an idle plugin).

A plugin that is missing, fails to load, or offers no CPU device is not an
error: :func:`status` says why, the CPU variants that need it are left out, and
``vggedge info`` prints the reason. Version 1.8.1 claims Intel hardware only, so
on AMD CPUs it registers but offers no device.

The full ``onnxruntime-openvino`` build (which replaces onnxruntime) is handled
in runtime/cpu/variants.py through the classic provider list, as before.
"""
from __future__ import annotations

import atexit
import importlib.metadata
import importlib.util
import json
import logging
import threading
from dataclasses import dataclass
from typing import Any, Iterable

from ...errors import BackendUnavailable, ConfigError

log = logging.getLogger(__name__)

PLUGIN_MODULE = "onnxruntime_ep_openvino"
PLUGIN_PACKAGE = "onnxruntime-ep-openvino"
EP_NAME = "OpenVINOExecutionProvider"
REGISTRATION_NAME = "vggedge_openvino_ep"
HINTS = ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT")
PRECISIONS = ("f32", "bf16", "f16")


@dataclass(frozen=True)
class OpenVinoOptions:
    """Typed OpenVINO CPU settings (no string-keyed dict where a typo would be ignored).

    ``performance_hint``: LATENCY (one request at a time, all cores on it: what
    measured best for vggedge's synchronous batches, see
    benchmarks/results/openvino-options.md) or THROUGHPUT; ``inference_precision``:
    None keeps OpenVINO's default for the device, "bf16" runs an FP32 model in
    bfloat16; ``threads``/``streams``: None keeps OpenVINO's choice.
    """

    performance_hint: str = "LATENCY"
    inference_precision: str | None = None
    threads: int | None = None
    streams: int | None = None

    def __post_init__(self) -> None:
        if self.performance_hint not in HINTS:
            raise ConfigError(f"OpenVINO performance_hint={self.performance_hint!r}: expected one of {HINTS}")
        if self.inference_precision is not None and self.inference_precision not in PRECISIONS:
            raise ConfigError(f"OpenVINO inference_precision={self.inference_precision!r}: "
                              f"expected None or one of {PRECISIONS}")
        for name in ("threads", "streams"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"OpenVINO {name}={value!r}: expected an integer >= 1 or None")

    def properties(self) -> dict[str, str]:
        """OpenVINO CPU properties (also what the native OpenVINO peer in benchmarks/peers.py is given)."""
        props = {"PERFORMANCE_HINT": self.performance_hint}
        if self.inference_precision:
            props["INFERENCE_PRECISION_HINT"] = self.inference_precision
        if self.threads:
            props["INFERENCE_NUM_THREADS"] = str(self.threads)
        if self.streams:
            props["NUM_STREAMS"] = str(self.streams)
        return props

    def plugin_options(self) -> dict[str, str]:
        """Provider options for the plugin: version 1.8 ignores the classic keys (precision,
        num_of_threads, ...) and takes OpenVINO properties through ``load_config``."""
        return {"load_config": json.dumps({"CPU": self.properties()})}

    def build_options(self) -> dict[str, str]:
        """Provider options for the full ``onnxruntime-openvino`` build (its classic keys)."""
        out = {"device_type": "CPU", "precision": "FP32"}
        if self.threads:
            out["num_of_threads"] = str(self.threads)
        if self.streams:
            out["num_streams"] = str(self.streams)
        return out


@dataclass(frozen=True)
class PluginStatus:
    """What this process knows about the plugin; ``reason`` is None when its CPU device is usable."""

    installed: bool
    version: str | None = None
    library: str | None = None
    registered: bool = False
    devices: tuple[str, ...] = ()  # OpenVINO device names the plugin offers (ep_metadata["ov_device"])
    reason: str | None = None

    @property
    def usable(self) -> bool:
        return self.reason is None and "CPU" in self.devices


class _State:
    """Process-wide registration state (one lock, one registration, a count of live sessions)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.status: PluginStatus | None = None
        self.sessions = 0


_STATE = _State()


def _version() -> str | None:
    try:
        return importlib.metadata.version(PLUGIN_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None


def installed() -> bool:
    """Whether the plugin package is importable (cheap: nothing is loaded)."""
    try:
        return importlib.util.find_spec(PLUGIN_MODULE) is not None
    except (ImportError, ValueError):
        return False


def filter_devices(devices: Iterable[Any], ep_name: str = EP_NAME, ov_device: str = "CPU") -> list[Any]:
    """The EP devices of ``ep_name`` whose OpenVINO device is ``ov_device``."""
    return [d for d in devices if d.ep_name == ep_name and dict(d.ep_metadata).get("ov_device") == ov_device]


def _no_device_reason(devices: list[Any], version: str | None) -> str:
    vendors = sorted({str(d.device.vendor) for d in devices if d.ep_name == "CPUExecutionProvider"})
    vendor = f" (this CPU's vendor: {', '.join(vendors)})" if vendors else ""
    return (f"{PLUGIN_PACKAGE} {version} registered but offers no OpenVINO CPU device{vendor}; "
            "it claims Intel hardware only")


def _register() -> PluginStatus:
    version = _version()
    if not installed():
        return PluginStatus(False, reason=f"{PLUGIN_PACKAGE} is not installed (pip install 'vggedge[openvino]')")
    try:
        import onnxruntime as ort

        module = __import__(PLUGIN_MODULE)
        library = module.get_library_path()
        if not hasattr(ort, "register_execution_provider_library"):
            return PluginStatus(True, version, library, reason=f"onnxruntime {ort.__version__} cannot load EP "
                                                              "plugins (needs >= 1.23)")
        ort.register_execution_provider_library(REGISTRATION_NAME, library)
        devices = list(ort.get_ep_devices())
    except Exception as exc:  # a broken plugin is a skip reason, never a crash
        return PluginStatus(True, version, reason=f"{PLUGIN_PACKAGE} {version} failed to load: "
                                                  f"{type(exc).__name__}: {exc}")
    offered = tuple(str(dict(d.ep_metadata).get("ov_device")) for d in devices if d.ep_name == EP_NAME)
    reason = None if "CPU" in offered else _no_device_reason(devices, version)
    return PluginStatus(True, version, library, True, offered, reason)


def status() -> PluginStatus:
    """Register the plugin on first call (once per process) and report what it offers."""
    with _STATE.lock:
        if _STATE.status is None:
            _STATE.status = _register()
            if _STATE.status.reason:
                log.info("OpenVINO plugin EP skipped: %s", _STATE.status.reason)
        return _STATE.status


def cpu_device() -> Any:
    """The plugin's OpenVINO CPU device, or BackendUnavailable with the reason."""
    found = status()
    if not found.usable:
        raise BackendUnavailable(f"OpenVINO plugin EP: {found.reason or 'no CPU device offered'}")
    import onnxruntime as ort

    return filter_devices(ort.get_ep_devices())[0]


def add_cpu_provider(session_options: Any, options: OpenVinoOptions) -> None:
    """Add the plugin's CPU device with ``options`` to onnxruntime ``SessionOptions``."""
    session_options.add_provider_for_devices([cpu_device()], options.plugin_options())


def acquire() -> None:
    """Count a session made with the plugin (call :func:`release` when it is gone)."""
    with _STATE.lock:
        _STATE.sessions += 1


def release() -> None:
    """Forget one session made with the plugin."""
    with _STATE.lock:
        _STATE.sessions = max(0, _STATE.sessions - 1)


def live_sessions() -> int:
    """How many sessions made with the plugin are alive."""
    return _STATE.sessions


def unregister() -> bool:
    """Unregister the plugin if no session uses it; False (and nothing done) while any does."""
    with _STATE.lock:
        if _STATE.sessions:
            log.debug("OpenVINO plugin kept registered: %d session(s) still alive", _STATE.sessions)
            return False
        if _STATE.status is not None and _STATE.status.registered:
            import onnxruntime as ort

            ort.unregister_execution_provider_library(REGISTRATION_NAME)
        _STATE.status = None
        return True


atexit.register(unregister)


def describe() -> dict:
    """For `vggedge info`: plugin found, version, devices, and why it is not used (registers it)."""
    found = status()
    import onnxruntime as ort

    return {"plugin_installed": found.installed, "plugin_version": found.version, "library": found.library,
            "devices": list(found.devices), "usable": found.usable, "reason": found.reason,
            "full_build": EP_NAME in ort.get_available_providers()}


def format_description(data: dict) -> list[str]:
    """Human-readable lines for :func:`describe`."""
    if not data["plugin_installed"]:
        line = f"OpenVINO plugin EP: not installed ({data['reason']})"
    else:
        devices = ", ".join(data["devices"]) or "none"
        line = (f"OpenVINO plugin EP: {PLUGIN_PACKAGE} {data['plugin_version']}, devices: {devices}"
                + ("" if data["usable"] else f"; not used: {data['reason']}"))
    build = "yes" if data["full_build"] else "no"
    return [line, f"onnxruntime-openvino full build (classic provider): {build}"]
