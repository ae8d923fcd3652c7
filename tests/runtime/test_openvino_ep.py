"""The OpenVINO plugin EP: option mapping, device filtering, once-per-process registration with the real
plugin (skips when it is not installed), and the runner's fallback when it offers no CPU device."""
from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import pytest

from vggedge.errors import BackendUnavailable, ConfigError
from vggedge.runtime.base import RunnerOptions
from vggedge.runtime.cpu import openvino_ep, features as cpuf, variants as cpuv
from vggedge.runtime.cpu.openvino_ep import OpenVinoOptions

ZEN4 = "flags\t\t: avx2 avx512f avx512_bf16 avx512_vnni\n"
ICELAKE = "flags\t\t: avx2 avx512f avx512_vnni\n"
SAPPHIRE = "flags\t\t: avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_int8 amx_tile\n"
CPU_ONLY = ("CPUExecutionProvider",)


def with_plugin(text: str, cores: int = 2) -> cpuf.CpuFeatures:
    return dataclasses.replace(cpuf.parse_cpuinfo(text, "x86_64", cores, CPU_ONLY), openvino_plugin=True)


def test_option_mapping():
    opts = OpenVinoOptions("THROUGHPUT", "bf16", threads=2, streams=1)
    assert opts.properties() == {"PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_PRECISION_HINT": "bf16",
                                 "INFERENCE_NUM_THREADS": "2", "NUM_STREAMS": "1"}
    # the plugin (1.8) ignores the classic keys: everything goes through load_config, per device
    assert json.loads(opts.plugin_options()["load_config"]) == {"CPU": opts.properties()}
    assert set(opts.plugin_options()) == {"load_config"}
    assert OpenVinoOptions().properties() == {"PERFORMANCE_HINT": "LATENCY"}  # OpenVINO chooses the rest
    assert opts.build_options() == {"device_type": "CPU", "precision": "FP32", "num_of_threads": "2",
                                    "num_streams": "1"}


@pytest.mark.parametrize("kwargs, match", [
    (dict(performance_hint="FAST"), "performance_hint='FAST'"),
    (dict(inference_precision="int4"), "inference_precision='int4'"),
    (dict(threads=0), "threads=0"),
    (dict(streams=True), "streams=True"),
])
def test_bad_options_are_refused(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        OpenVinoOptions(**kwargs)


def test_device_filtering():
    def dev(ep, ov=None):
        return SimpleNamespace(ep_name=ep, ep_metadata={"ov_device": ov} if ov else {})

    devices = [dev("CPUExecutionProvider"), dev("OpenVINOExecutionProvider", "GPU"),
               dev("OpenVINOExecutionProvider", "CPU"), dev("OtherEP", "CPU")]
    assert openvino_ep.filter_devices(devices) == [devices[2]]
    assert openvino_ep.filter_devices(devices, ov_device="GPU") == [devices[1]]


def test_plugin_variants_and_order():
    keys = [v.key for v in cpuv.variants_for(with_plugin(ZEN4))]
    assert keys == ["ov-int8", "int8", "int8-trt", "ov-bf16", "fp32"]
    assert [v.key for v in cpuv.variants_for(with_plugin(SAPPHIRE))][:2] == ["ov-int8", "ov-bf16"]  # AMX: bf16 next
    assert "ov-bf16" not in [v.key for v in cpuv.variants_for(with_plugin(ICELAKE))]  # no bf16 instructions
    ov_int8, bf16 = (next(v for v in cpuv.variants_for(with_plugin(ZEN4)) if v.key == k) for k in ("ov-int8", "ov-bf16"))
    assert ov_int8.model == "tensorrt" and ov_int8.options.openvino == OpenVinoOptions("LATENCY")
    assert bf16.model == "fp32" and bf16.options.openvino.inference_precision == "bf16"
    assert ov_int8.options.intra_op_threads == 2  # the plain provider (fallback for the rest) keeps its tuning


def test_user_threads_reach_openvino(tmp_path):
    variant = next(v for v in cpuv.variants_for(with_plugin(ZEN4)) if v.key == "ov-int8")
    (tmp_path / "vgg16.int8.onnx").write_bytes(b"x")
    runner = cpuv.runner_for(variant, tmp_path / "vgg16.onnx", RunnerOptions(threads=1))
    assert runner.options.openvino.threads == 1 and runner.options.intra_op_threads == 1


def test_full_build_keeps_the_classic_provider_list():
    features = cpuf.parse_cpuinfo(ZEN4, "x86_64", 4, ("OpenVINOExecutionProvider", "CPUExecutionProvider"))
    ov = cpuv.variants_for(features)[0]
    assert ov.key == "ov-int8" and ov.options.openvino is None
    assert ov.options.providers[0] == ("OpenVINOExecutionProvider", {"device_type": "CPU", "precision": "FP32",
                                                                      "num_of_threads": "4"})


@pytest.fixture
def plugin():
    if not openvino_ep.installed():
        pytest.skip("onnxruntime-ep-openvino is not installed (pip install 'vggedge[openvino]'; x86-64 only)")
    import onnxruntime as ort

    if not hasattr(ort, "register_execution_provider_library"):
        pytest.skip(f"onnxruntime {ort.__version__} cannot load EP plugins (needs >= 1.23)")
    return ort


def test_registers_once_per_process(plugin, monkeypatch):
    assert openvino_ep.unregister()  # start from an unregistered plugin (no session is alive)
    calls = []
    real = plugin.register_execution_provider_library
    monkeypatch.setattr(plugin, "register_execution_provider_library", lambda *a: (calls.append(a), real(*a)))
    first = openvino_ep.status()
    assert openvino_ep.status() is first and openvino_ep.status() is first
    assert len(calls) == 1 and calls[0][0] == openvino_ep.REGISTRATION_NAME
    assert first.installed and first.registered and first.version
    eps = {d.ep_name for d in plugin.get_ep_devices()}
    assert ("OpenVINOExecutionProvider" in eps) == bool(first.devices)
    if not first.usable:  # e.g. AMD CPUs: version 1.8 claims Intel hardware only
        assert "offers no OpenVINO CPU device" in first.reason


def test_never_unregistered_under_a_live_session(plugin):
    openvino_ep.status()
    openvino_ep.acquire()
    try:
        assert openvino_ep.unregister() is False
        assert openvino_ep.status().registered
    finally:
        openvino_ep.release()
    assert openvino_ep.unregister() is True and openvino_ep.live_sessions() == 0


def test_describe_reports_found_version_devices(plugin):
    data = openvino_ep.describe()
    assert data["plugin_installed"] and data["plugin_version"] == openvino_ep.status().version
    text = "\n".join(openvino_ep.format_description(data))
    assert f"onnxruntime-ep-openvino {data['plugin_version']}, devices: " in text
    assert ("not used:" in text) == (not data["usable"])


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    from vggedge.model.export import export_vgg16
    from vggedge.model.vgg16 import VGG16Options

    opts = VGG16Options(include_rescaling=False, include_top=True, num_classes=10, input_shape=(32, 32, 3))
    return export_vgg16("random:3", tmp_path_factory.mktemp("ov") / "vgg16.onnx", opts).onnx_path


def test_session_on_the_plugin(plugin, small):
    import numpy as np

    from vggedge.runtime.ort import OrtOptions, OrtRunner

    runner = OrtRunner(small, OrtOptions(openvino=OpenVinoOptions("LATENCY")))
    if not openvino_ep.status().usable:
        with pytest.raises(BackendUnavailable, match="OpenVINO plugin EP: .*offers no OpenVINO CPU device"):
            runner.activate()  # a reported reason, not a crash
        assert openvino_ep.live_sessions() == 0 and not runner.active
        pytest.skip(f"plugin offers no CPU device here: {openvino_ep.status().reason}")
    with runner:
        assert openvino_ep.live_sessions() == 1
        assert runner.providers()[0] == "OpenVINOExecutionProvider"
        x = np.random.default_rng(0).uniform(-50, 50, (2, 3, 32, 32)).astype(np.float32)
        out = runner.infer({"images": x})
        assert out[next(iter(out))].shape == (2, 10)
    assert openvino_ep.live_sessions() == 0


SIGNAL_AFTER_FIFO_RELEASE = r"""
import os, signal, sys
from vggedge.runtime.cpu import signal_stack
from vggedge.runtime.cpu.openvino_ep import OpenVinoOptions
from vggedge.runtime.ort import OrtOptions, OrtRunner
before = signal_stack.current()
a = OrtRunner(sys.argv[1], OrtOptions(openvino=OpenVinoOptions("LATENCY"))).activate()
b = OrtRunner(sys.argv[1], OrtOptions(openvino=OpenVinoOptions("LATENCY"))).activate()
print("active kept", signal_stack.current() == before, flush=True)
a.deactivate(); b.deactivate()  # first in, first out
print("stack kept", signal_stack.current() == before, flush=True)
seen = []
signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
os.kill(os.getpid(), signal.SIGTERM)
print("handled", seen, flush=True)
"""


def test_sessions_on_the_plugin_keep_the_threads_signal_stack(plugin, small):
    """The plugin EP compiles with OpenVINO's CPU plugin, which swaps the thread's signal stack (see
    runtime/cpu/signal_stack.py). Without the runner's guard the thread is left on OpenVINO's stack after two
    sessions (seen on an Intel Xeon, plugin 1.8.1); with it, the stack is the thread's own throughout."""
    import subprocess
    import sys

    if not openvino_ep.status().usable:
        pytest.skip(f"plugin offers no CPU device here: {openvino_ep.status().reason}")
    proc = subprocess.run([sys.executable, "-c", SIGNAL_AFTER_FIFO_RELEASE, str(small)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert proc.stdout.split("\n")[:3] == ["active kept True", "stack kept True", "handled [15]"]

def test_this_machine_leaves_out_what_it_cannot_run(plugin):
    features = cpuf.cpu_features()
    keys = [v.key for v in cpuv.variants_for(features)]
    assert features.openvino_plugin == openvino_ep.status().usable
    assert ("ov-int8" in keys) == (features.openvino_plugin or "OpenVINOExecutionProvider" in features.providers)


def test_a_plugin_that_fails_to_load_is_a_reason_not_a_crash(monkeypatch):
    import onnxruntime as ort

    assert openvino_ep.unregister()
    monkeypatch.setattr(openvino_ep, "installed", lambda: True)

    def broken(name, path):
        raise RuntimeError("undefined symbol: OrtGetApiBase")
    monkeypatch.setattr(ort, "register_execution_provider_library", broken, raising=False)
    try:
        found = openvino_ep.status()
        assert not found.usable and not found.registered
        assert "onnxruntime-ep-openvino" in found.reason and "failed to load" in found.reason
        with pytest.raises(BackendUnavailable, match="failed to load"):
            openvino_ep.cpu_device()
        features = cpuf.cpu_features()
        assert not features.openvino_plugin
        assert all(v.options.openvino is None for v in cpuv.variants_for(features))
    finally:
        assert openvino_ep.unregister()  # forget the failed attempt (nothing was registered)
