"""The tuner's choice and cache with fake timings, the override rules, and one real short run."""
from __future__ import annotations

import json
import os

import pytest
from small_models import link_model

from vggedge.errors import BackendUnavailable
from vggedge.runtime import cpu, tune
from vggedge.runtime.base import RunnerOptions

ZEN4 = cpu.parse_cpuinfo("flags\t\t: avx2 avx512f avx512_bf16 avx512_vnni\n", "x86_64", 2, ("CPUExecutionProvider",))


@pytest.fixture
def model(tmp_path, monkeypatch):
    """A fake FP32 file with both INT8 files beside it (timings are faked: nothing is loaded)."""
    monkeypatch.setenv("VGGEDGE_TUNE", "1")
    monkeypatch.setenv("VGGEDGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cpu, "cpu_features", lambda: ZEN4)
    fp32 = tmp_path / "vgg16.onnx"
    for name in ("vgg16.onnx", "vgg16.int8.onnx", "vgg16.int8-cpu.onnx"):
        (tmp_path / name).write_bytes(name.encode())
    return fp32


class FakeTimer:
    """Seconds per batch by variant key; records what was timed."""

    def __init__(self, seconds: dict[str, float]) -> None:
        self.seconds, self.calls = seconds, []

    def __call__(self, variant, fp32, options, seconds):
        self.calls.append((variant.key, options.max_batch))
        return self.seconds[variant.key]


def test_times_every_runnable_variant_and_caches_the_winner(model):
    timer = FakeTimer({"int8": 0.30, "int8-trt": 0.20, "fp32": 0.90})
    result = tune.tune(model, RunnerOptions(max_batch=4), features=ZEN4, timer=timer)
    assert sorted(timer.calls) == [("fp32", 4), ("int8", 4), ("int8-trt", 4)]
    assert result.winner == "int8-trt" and not result.cached
    assert tune.cache_path(result.key).parent == model.parent / "cache" / "tune"
    again = tune.tune(model, RunnerOptions(max_batch=4), features=ZEN4, timer=timer)
    assert len(timer.calls) == 3 and again.cached and again.winner == "int8-trt"  # cache hit: no timing


@pytest.mark.parametrize("change", ["model", "cpu", "package", "batch", "files", "threads"])
def test_a_changed_key_re_tunes(model, monkeypatch, change):
    timer = FakeTimer({"int8": 0.3, "int8-trt": 0.2, "fp32": 0.9})
    tune.tune(model, features=ZEN4, timer=timer)
    assert len(timer.calls) == 3
    batch, threads = 8, None
    if change == "model":
        model.write_bytes(b"other weights")
        for variant in model.parent.glob("vgg16.int8*.onnx"):  # rewritten from it too (else they are stale)
            stamp = model.stat().st_mtime_ns + 10**9
            os.utime(variant, ns=(stamp, stamp))
    elif change == "cpu":
        monkeypatch.setattr(tune, "cpu_model_name", lambda: "Intel(R) Xeon(R) Platinum 8480+")
    elif change == "package":
        real = tune.package_versions()
        monkeypatch.setattr(tune, "package_versions", lambda: real + (("onnxruntime-ep-openvino", "9.9"),))
    elif change == "batch":
        batch = 1
    elif change == "threads":
        threads = 1
    else:
        (model.parent / "vgg16.int8-cpu.onnx").unlink()
    tune.tune(model, RunnerOptions(max_batch=batch, threads=threads), features=ZEN4, timer=timer)
    assert len(timer.calls) > 3
    tune.tune(model, RunnerOptions(max_batch=batch, threads=threads), features=ZEN4, timer=timer)  # cached again
    assert len(timer.calls) in (5, 6)


def test_core_count_is_part_of_the_key(model):
    import dataclasses

    a = tune.key_for(model, 8, ZEN4, cpu.variants_for(ZEN4))
    b = tune.key_for(model, 8, dataclasses.replace(ZEN4, cores=16), cpu.variants_for(ZEN4))
    assert a.digest() != b.digest()


def test_auto_runs_the_measured_winner_and_announces_tuning(model, monkeypatch, caplog):
    timer = FakeTimer({"int8": 0.3, "int8-trt": 0.5, "fp32": 0.1})
    monkeypatch.setattr(tune, "time_variant", timer)
    with caplog.at_level("INFO"):
        runner = cpu.cpu_runner(model, RunnerOptions(max_batch=2), precision="auto")
    assert runner.model == model  # fp32 measured fastest here, against the feature order
    assert sum("tuning the CPU path for vgg16.onnx at batch 2" in r.message for r in caplog.records) == 1
    cpu.cpu_runner(model, RunnerOptions(max_batch=2), precision="auto")
    assert len(timer.calls) == 3  # the second runner read the cache


def test_user_override_and_explicit_precision_win(model, monkeypatch):
    timer = FakeTimer({"int8": 0.3, "int8-trt": 0.5, "fp32": 0.1})
    monkeypatch.setattr(tune, "time_variant", timer)
    monkeypatch.setenv("VGGEDGE_CPU_VARIANT", "int8-trt")
    assert cpu.cpu_runner(model, precision="auto").model.name == "vgg16.int8.onnx"
    assert cpu.cpu_runner(model, precision="auto", variant="int8").model.name == "vgg16.int8-cpu.onnx"
    monkeypatch.delenv("VGGEDGE_CPU_VARIANT")
    assert cpu.cpu_runner(model, precision="as-given").model == model
    assert timer.calls == []  # nothing was timed


def test_override_without_its_file_says_how_to_build(model, monkeypatch):
    (model.parent / "vgg16.int8.onnx").unlink()
    monkeypatch.setenv("VGGEDGE_CPU_VARIANT", "int8-trt")
    with pytest.raises(BackendUnavailable, match=r"vgg16\.int8\.onnx: the int8-trt CPU variant .*vggedge build"):
        cpu.cpu_runner(model, precision="auto")


def test_tuning_off_keeps_the_feature_order(model, monkeypatch):
    timer = FakeTimer({})
    monkeypatch.setattr(tune, "time_variant", timer)
    monkeypatch.setenv("VGGEDGE_TUNE", "0")
    assert cpu.cpu_runner(model, precision="auto").model.name == "vgg16.int8-cpu.onnx"  # variants_for order
    assert timer.calls == []


def test_a_corrupt_cache_entry_is_moved_aside_and_re_tuned(model, caplog):
    timer = FakeTimer({"int8": 0.3, "int8-trt": 0.2, "fp32": 0.9})
    first = tune.tune(model, features=ZEN4, timer=timer)
    path = tune.cache_path(first.key)
    path.write_text(json.dumps({"version": 1, "key": {}}))
    with caplog.at_level("WARNING"):
        again = tune.tune(model, features=ZEN4, timer=timer)
    assert len(timer.calls) == 6 and again.winner == "int8-trt"
    assert "unusable" in caplog.text and path.with_suffix(".bad").exists()
    assert json.loads(path.read_text())["winner"] == "int8-trt"


def test_a_variant_that_fails_is_reported_not_fatal(model):
    def timer(variant, fp32, options, seconds):
        if variant.key == "int8":
            raise BackendUnavailable("OpenVINO plugin EP: no device")
        return 0.5
    result = tune.tune(model, features=ZEN4, timer=timer)
    assert result.failed == {"int8": "OpenVINO plugin EP: no device"} and result.winner in ("int8-trt", "fp32")
    assert any("not run: OpenVINO plugin EP: no device" in line for line in tune.format_table(result))


def test_real_short_tune_on_the_tiny_model(tmp_path, monkeypatch, capsys, vgg32):
    """Real sessions, real clock (no speed asserted): every variant is timed, the winner cached and shown."""
    from vggedge.cli import main

    monkeypatch.setenv("VGGEDGE_CACHE", str(tmp_path / "cache"))
    fp32 = link_model(vgg32("random:5", 10), tmp_path, "vgg16.onnx")
    cpu.prepare_variants(fp32, "calib")
    result = tune.tune(fp32, RunnerOptions(max_batch=2), seconds=0.2)
    runnable = [v.key for v in tune.runnable(fp32, cpu.cpu_features())]
    assert set(result.seconds_per_batch) | set(result.failed) == set(runnable) and len(runnable) >= 3
    assert all(s > 0 for s in result.seconds_per_batch.values()) and result.winner in result.seconds_per_batch
    assert main(["tune", "--model", str(fp32), "--batch-size", "2", "--seconds", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "(cached," in out and f"precision=auto will run {result.winner}" in out
    assert main(["info", "--model", str(fp32)]) == 0
    out = capsys.readouterr().out
    assert f"tuned CPU variants of {fp32}:" in out and "<- chosen" in out and "OpenVINO plugin EP:" in out


def test_unwritable_cache_or_failed_tuning_never_breaks_inference(model, monkeypatch, tmp_path, caplog):
    (tmp_path / "file").write_text("x")
    monkeypatch.setattr(tune, "cache_path", lambda key: tmp_path / "file" / "t.json")  # parent is a file
    monkeypatch.setattr(tune, "time_variant", FakeTimer({"int8": 0.3, "int8-trt": 0.5, "fp32": 0.1}))
    with caplog.at_level("WARNING"):
        assert tune.tune(model, features=ZEN4).winner == "fp32"
    assert "could not cache the tuning result" in caplog.text

    def broken(*args):
        raise BackendUnavailable("nothing runs")
    monkeypatch.setattr(tune, "time_variant", broken)
    with caplog.at_level("WARNING"):
        runner = cpu.cpu_runner(model, precision="auto")
    assert runner.model.name == "vgg16.int8-cpu.onnx"  # the feature-detection order
    assert "CPU tuning failed" in caplog.text
