"""Tests for vggedge.runtime.select: probes, auto selection, forced backends and skip reasons."""
from __future__ import annotations

import ctypes
import logging
import sys
import types
from pathlib import Path

import onnx
import pytest

from vggedge.errors import BackendUnavailable, ConfigError
from vggedge.model.vgg16 import VGG16Options, build_onnx, random_weights
from vggedge.runtime import select
from vggedge.runtime.base import RunnerOptions
from vggedge.runtime.ort import OrtRunner
from vggedge.runtime.select import Backend, availability, gpu_reason, select_runner

OPTS = VGG16Options(include_rescaling=False, include_top=False, pooling="avg", input_shape=(32, 32, 3))
CPU_ONLY = select.probe_trt() is not None and select.probe_ort_cuda() is not None
cpu_only = pytest.mark.skipif(not CPU_ONLY, reason="this machine has TensorRT or onnxruntime CUDA")


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("select") / "small.onnx"
    onnx.save(build_onnx(random_weights(OPTS), OPTS), path)
    return path


def fake_trt(monkeypatch: pytest.MonkeyPatch, runner_path: str = "vggedge.runtime.gpu.trt:TrtRunner") -> None:
    """Register a 'trt' backend whose probe passes (as on a machine with TensorRT and a GPU)."""
    monkeypatch.setitem(select.BACKENDS, "trt", Backend("trt", runner_path, lambda: None, "engine"))


@cpu_only
def test_auto_picks_ort_cpu_with_reasons(model_path: Path) -> None:
    chosen = select_runner(model_path, "auto")
    assert chosen.backend == "ort-cpu"
    assert isinstance(chosen.runner, OrtRunner) and not chosen.runner.active
    assert chosen.runner.model == model_path
    reasons = dict(chosen.skipped)
    assert [name for name, _ in chosen.skipped] == ["trt", "ort-cuda"]
    assert reasons["trt"] == select.probe_trt()
    if select._module_missing("tensorrt"):
        assert reasons["trt"] == "Python package 'tensorrt' is not installed"
    assert "CUDAExecutionProvider" in reasons["ort-cuda"] or "onnxruntime-gpu" in reasons["ort-cuda"]
    with chosen.runner as run:
        assert run.providers() == ["CPUExecutionProvider"]


@cpu_only
def test_auto_logs_one_info_line_per_skip(model_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="vggedge.runtime.select")
    select_runner(model_path)
    lines = [r for r in caplog.records if r.name == "vggedge.runtime.select"]
    assert [r.levelno for r in lines] == [logging.INFO, logging.INFO, logging.INFO]
    assert lines[0].getMessage().startswith("backend trt skipped: ")
    assert lines[1].getMessage().startswith("backend ort-cuda skipped: ")
    assert lines[2].getMessage() == ("backend ort-cpu runs small.onnx: the model given (no spec, precision "
                                     "as-given) on the fp32 CPU session")  # what was chosen, and why


@cpu_only
def test_forced_trt_unavailable(model_path: Path) -> None:
    reason = select.probe_trt()
    with pytest.raises(BackendUnavailable, match=r"backend 'trt' cannot run here: ") as info:
        select_runner(model_path, "trt")
    assert reason in str(info.value)


def test_forced_ort_cpu(model_path: Path) -> None:
    chosen = select_runner(model_path, "ort-cpu")
    assert chosen.backend == "ort-cpu" and chosen.skipped == []


def test_unknown_backend_lists_choices(model_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"backend 'cuda' is unknown; choose auto or one of "
                                          r"\['ort-cpu', 'ort-cuda', 'trt'\]"):
        select_runner(model_path, "cuda")


def test_trt_probe_passes_but_no_engine(model_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_trt(monkeypatch)
    chosen = select_runner(model_path, "auto", engine=None)
    assert chosen.skipped[0] == ("trt", f"no TensorRT engine built for {model_path} (build one with: vggedge build "
                                        f"--model {model_path} --precision fp32 --batch 1,8,32)")
    assert chosen.backend in ("ort-cuda", "ort-cpu")
    chosen = select_runner(model_path, "auto", engine_reason="engine built for another GPU")
    assert chosen.skipped[0] == ("trt", "engine built for another GPU")
    with pytest.raises(BackendUnavailable, match=r"backend 'trt' cannot run here: no TensorRT engine built"):
        select_runner(model_path, "trt")


def test_engine_backend_gets_the_engine_path(model_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    class StandIn(OrtRunner):  # stands in for TrtRunner
        def __init__(self, plan, options, *, model_path=None) -> None:
            super().__init__(plan, None, options)
            self.source = model_path

    monkeypatch.setitem(sys.modules, "standin_for_trt", types.SimpleNamespace(StandIn=StandIn))
    fake_trt(monkeypatch, runner_path="standin_for_trt:StandIn")
    engine = tmp_path / "small.engine"
    chosen = select_runner(model_path, "auto", engine=engine)
    assert chosen.backend == "trt" and chosen.skipped == []
    assert chosen.runner.model == engine and chosen.runner.source == str(model_path)


def test_nothing_usable(model_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, entry in list(select.BACKENDS.items()):
        monkeypatch.setitem(select.BACKENDS, name,
                            Backend(name, entry.runner_path, lambda n=name: f"{n} is broken", entry.artefact))
    with pytest.raises(BackendUnavailable, match=r"no backend can run here: trt: trt is broken; "
                                                 r"ort-cuda: ort-cuda is broken; ort-cpu: ort-cpu is broken"):
        select_runner(model_path)


def test_availability_ort_cpu_usable() -> None:
    found = availability()
    assert set(found) == {"trt", "ort-cuda", "ort-cpu"}
    assert found["ort-cpu"] is None
    assert all(v is None or isinstance(v, str) for v in found.values())


def test_missing_module_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    assert select._module_missing("onnxruntime") is None
    assert select._module_missing("no_such_module_xyz") == "Python package 'no_such_module_xyz' is not installed"


def test_gpu_reason_here() -> None:
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        assert gpu_reason() == "no NVIDIA driver (libcuda.so.1 not found): no GPU on this machine"
    else:
        pytest.skip("this machine has an NVIDIA driver")


class FakeDriver:
    """Stands in for libcuda: cuInit and cuDeviceGetCount with a chosen device count."""

    def __init__(self, count: int, init_status: int = 0) -> None:
        self.count, self.init_status = count, init_status

    def cuInit(self, flags: int) -> int:  # noqa: N802 (CUDA's name)
        return self.init_status

    def cuDeviceGetCount(self, ref) -> int:  # noqa: N802
        ref._obj.value = self.count
        return 0


@pytest.mark.parametrize("driver, expected", [
    (FakeDriver(0), "the NVIDIA driver reports no usable GPU"),
    (FakeDriver(2, init_status=100), "the NVIDIA driver reports no usable GPU"),
    (FakeDriver(1), None),
])
def test_gpu_reason_with_fake_driver(monkeypatch: pytest.MonkeyPatch, driver: FakeDriver,
                                     expected: str | None) -> None:
    monkeypatch.setattr(ctypes, "CDLL", lambda name: driver)
    assert gpu_reason() == expected


# --- built engines are found (fake TensorRT machine from tests/conftest.py) -----------------------------
@cpu_only
@pytest.mark.parametrize("backend", ["auto", "trt"])
def test_built_engine_is_picked(model_copy: Path, fake_trt_machine, engine_writer, backend: str) -> None:
    plan = engine_writer(model_copy)
    chosen = select_runner(model_copy, backend, options=RunnerOptions(max_batch=4))
    assert chosen.backend == "trt" and chosen.skipped == [] and chosen.artefact == plan
    assert isinstance(chosen.runner, fake_trt_machine.runner) and chosen.runner.plan == plan
    assert chosen.runner.source == str(model_copy) and chosen.runner.runner_options.max_batch == 4
    assert chosen.report()["artefact"] == str(plan) and chosen.report()["backend"] == "trt"


@cpu_only
def test_engine_for_other_gpu_is_refused_with_rebuild_command(model_copy: Path, fake_trt_machine,
                                                              engine_writer) -> None:
    plan = engine_writer(model_copy, gpu=("Xavier", "7.2"), trt_version="8.6.1")
    chosen = select_runner(model_copy, "auto")
    assert chosen.backend == "ort-cpu"
    reason = dict(chosen.skipped)["trt"]
    assert f"{plan} cannot be used here" in reason
    assert "GPU name: built for Xavier, this machine has Orin" in reason
    assert "TensorRT version: built with 8.6.1, this machine has 10.3.0" in reason
    assert f"vggedge build --model {model_copy} --precision fp32 --batch 1,8,32" in reason
    with pytest.raises(BackendUnavailable, match=r"backend 'trt' cannot run here: 1 engine\(s\) found") as info:
        select_runner(model_copy, "trt")
    assert f"vggedge build --model {model_copy} --precision fp32" in str(info.value)


def test_engine_given_as_model(model_copy: Path, fake_trt_machine, engine_writer) -> None:
    plan = engine_writer(model_copy)
    chosen = select_runner(plan, "auto")
    assert chosen.backend == "trt" and chosen.runner.plan == plan and chosen.artefact == plan
    with pytest.raises(ConfigError, match=r"is a TensorRT engine; backend 'ort-cpu' runs ONNX models: "
                                          r"pass --model .*m\.onnx instead"):
        select_runner(plan, "ort-cpu")
    with pytest.raises(ConfigError, match=r"is a fp32 engine, but precision fp16 was requested"):
        select_runner(plan, "auto", precision="fp16")


def test_engine_model_for_other_gpu_raises_mismatch(model_copy: Path, fake_trt_machine, engine_writer) -> None:
    from vggedge.errors import EngineMismatch

    plan = engine_writer(model_copy, gpu=("Xavier", "7.2"))
    with pytest.raises(EngineMismatch, match=r"GPU name: built for Xavier(.|\n)*Rebuild it on this machine with:"):
        select_runner(plan)


@cpu_only
def test_engine_model_without_tensorrt_says_why(model_copy: Path, engine_writer) -> None:
    plan = engine_writer(model_copy)
    with pytest.raises(BackendUnavailable, match=r"backend 'trt' cannot run .*\.plan here: .*tensorrt.* "
                                                 r"\(onnxruntime can run its source ONNX: --model .*m\.onnx\)"):
        select_runner(plan)


@cpu_only
def test_precision_picks_engine_and_onnx_variants(model_copy: Path, fake_trt_machine, engine_writer,
                                                  variant_writer) -> None:
    fp16 = variant_writer(model_copy, "fp16", "fp16")
    fp16_plan = engine_writer(fp16)
    assert select_runner(model_copy, "auto").backend == "ort-cpu"  # as-given: no engine from m.onnx itself
    assert select_runner(model_copy, "auto", precision="fp16").artefact == fp16_plan
    assert select_runner(model_copy, "auto", precision="auto").artefact == fp16_plan
    on_cpu = select_runner(model_copy, "ort-cpu", precision="fp16")
    assert on_cpu.artefact == fp16 and on_cpu.runner.model == fp16
    assert select_runner(model_copy, "ort-cpu", precision="auto").artefact == model_copy
    with pytest.raises(BackendUnavailable, match=r"no int8 variant of .*m\.onnx"):
        select_runner(model_copy, "ort-cpu", precision="int8")


def test_plan_selection_constructs_nothing(model_copy: Path, fake_trt_machine, engine_writer) -> None:
    plan = engine_writer(model_copy)
    chosen = select.plan_selection(model_copy, "auto")
    assert (chosen.backend, chosen.artefact) == ("trt", plan)
    assert chosen.spec.precision == "fp32" and chosen.spec.num_classes == 10  # from the engine's sidecar
    assert chosen.why == (f"{plan.name}: TensorRT fp32 engine built from m.onnx for this GPU and TensorRT "
                          "(precision as-given)")
    assert chosen.kwargs == {"model_path": str(model_copy)} and chosen.options.max_batch == 8
    assert fake_trt_machine.runner.made == []


def test_prepare_artefacts_runs_the_chosen_backends_preparer(model_path: Path, monkeypatch) -> None:
    calls = []
    monkeypatch.setitem(sys.modules, "fake_preparer", types.SimpleNamespace(run=lambda m, c: calls.append((m, c))))
    for name, entry in list(select.BACKENDS.items()):
        monkeypatch.setitem(select.BACKENDS, name, Backend(name, entry.runner_path, lambda: None, "onnx",
                                                           preparer="fake_preparer:run" if name == "ort-cuda" else None))
    monkeypatch.setitem(select.BACKENDS, "trt", Backend("trt", "x:y", lambda: "no GPU", "engine"))
    assert select.prepare_artefacts(model_path, "auto", calib="calib") == "ort-cuda"
    assert calls == [(model_path, "calib")]
    assert select.prepare_artefacts(model_path, "ort-cpu", calib="calib") == "ort-cpu"  # nothing to prepare
    assert calls == [(model_path, "calib")]


@cpu_only
def test_auto_precision_names_the_cpu_variant_that_runs(cpu_int8_model: Path) -> None:
    """The plan names the file the CPU really runs, with its spec: not the FP32 model it was asked for."""
    from vggedge.runtime.cpu.features import cpu_features
    from vggedge.runtime.cpu.variants import current_variant, variants_for

    # VGGEDGE_TUNE=0: the first variant in feature-detection order whose file exists (the OpenVINO plugin's
    # ov-int8 where it is installed and offers this CPU, else onnxruntime's CPU-style int8)
    first = next(v for v in variants_for(cpu_features()) if current_variant(cpu_int8_model, v.model))
    chosen = select_runner(cpu_int8_model, "ort-cpu", precision="auto")
    assert chosen.artefact.name != cpu_int8_model.name and chosen.artefact.name.startswith("m.int8")
    assert chosen.artefact == current_variant(cpu_int8_model, first.model) and first.precision == "int8"
    assert chosen.runner.model == chosen.artefact and chosen.spec.precision == "int8"
    assert chosen.why == f"{chosen.artefact.name}: CPU variant {first.key} (first in feature-detection order " \
                         "whose file exists; tuning off)"
    assert chosen.report()["artefact"] == str(chosen.artefact) and chosen.report()["precision"] == "int8"
    assert select_runner(cpu_int8_model, "auto", precision="auto").artefact == chosen.artefact
    as_given = select_runner(cpu_int8_model, "ort-cpu")
    assert as_given.artefact == cpu_int8_model and as_given.spec.precision == "fp32"


def test_gpu_onnx_plan_takes_the_fp16_variant_for_auto(model_copy: Path, variant_writer,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(select.BACKENDS, "ort-cuda", Backend("ort-cuda", "not:built", lambda: None, "onnx"))
    plan = select.plan_selection(model_copy, "ort-cuda", precision="auto")
    assert (plan.artefact, plan.precision) == (model_copy, "fp32")
    assert plan.why == "m.onnx: the model given (precision auto; no FP16 variant built)"
    fp16 = variant_writer(model_copy, "fp16", "fp16")
    plan = select.plan_selection(model_copy, "ort-cuda", precision="auto")
    assert (plan.artefact, plan.precision, plan.why) == (fp16, "fp16", "m.fp16.onnx: FP16 variant (precision auto "
                                                                       "on the GPU)")
