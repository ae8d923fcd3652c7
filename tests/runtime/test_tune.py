"""The tuner's choice and cache with fake timings, the override rules, and one real short run."""
from __future__ import annotations

import json
import os

from pathlib import Path

import pytest
from small_models import link_model

from vggedge.errors import BackendUnavailable
from vggedge.runtime.base import RunnerOptions
from vggedge.runtime.plan import PlanRequest
from vggedge.runtime.cpu import tune, features as cpuf, variants as cpuv, planner as cpup

ZEN4 = cpuf.parse_cpuinfo("flags\t\t: avx2 avx512f avx512_bf16 avx512_vnni\n", "x86_64", 2, ("CPUExecutionProvider",))

def cpu_plan(model, options=None, *, precision="as-given", **kwargs):
    """The ort-cpu planner hook's choice (file, runner options) for a model."""
    return cpup.plan_cpu(PlanRequest(Path(model), precision, options or RunnerOptions()), **kwargs)


def cpu_runner(model, options=None, precision="as-given"):
    """The inactive runner the ort-cpu backend plans for a model (the planner hook, then its runner class)."""
    from vggedge.runtime.select import select_runner

    return select_runner(model, "ort-cpu", options=options, precision=precision).runner



@pytest.fixture
def model(tmp_path, monkeypatch):
    """A fake FP32 file with both INT8 files beside it (timings are faked: nothing is loaded)."""
    monkeypatch.setenv("VGGEDGE_TUNE", "1")
    monkeypatch.setenv("VGGEDGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cpuf, "cpu_features", lambda: ZEN4)
    fp32 = tmp_path / "vgg16.onnx"
    for name in ("vgg16.onnx", "vgg16.int8.onnx", "vgg16.int8-cpu.onnx"):
        (tmp_path / name).write_bytes(name.encode())
    return fp32


class FakeTimer:
    """Seconds per call by variant key (one figure for every call size, or {rows per call: seconds});
    records what was timed as (variant, rows per call)."""

    def __init__(self, seconds: dict[str, float | dict[int, float]]) -> None:
        self.seconds, self.calls = seconds, []

    def __call__(self, variant, fp32, options, seconds):
        assert options.micro_batch is None  # each call size is timed as whole calls
        self.calls.append((variant.key, options.max_batch))
        got = self.seconds[variant.key]
        return got[options.max_batch] if isinstance(got, dict) else got


def test_times_every_runnable_variant_and_caches_the_winner(model):
    timer = FakeTimer({"int8": 0.30, "int8-trt": 0.20, "fp32": 0.90})
    result = tune.tune(model, RunnerOptions(max_batch=4), features=ZEN4, timer=timer)
    assert sorted(timer.calls) == sorted(2 * [(k, m) for k in ("fp32", "int8", "int8-trt") for m in (1, 2, 4)])
    assert result.winner == "int8-trt" and not result.cached and result.micro_batch() == 4
    assert tune.cache_path(result.key).parent == model.parent / "cache" / "tune"
    again = tune.tune(model, RunnerOptions(max_batch=4), features=ZEN4, timer=timer)
    assert len(timer.calls) == 18 and again.cached and again.winner == "int8-trt"  # cache hit: no timing
    assert again.per_call == result.per_call and again.micro_batch() == 4


@pytest.mark.parametrize("change", ["model", "cpu", "package", "batch", "files", "threads"])
def test_a_changed_key_re_tunes(model, monkeypatch, change):
    timer = FakeTimer({"int8": 0.3, "int8-trt": 0.2, "fp32": 0.9})
    tune.tune(model, features=ZEN4, timer=timer)
    first = len(timer.calls)
    assert first == 18  # 2 rounds x 3 variants x call sizes 1, 4, 8
    batch, threads = 8, None
    if change == "model":
        model.write_bytes(b"other weights")
        for variant in model.parent.glob("vgg16.int8*.onnx"):  # rewritten from it too (else they are stale)
            stamp = model.stat().st_mtime_ns + 10**9
            os.utime(variant, ns=(stamp, stamp))
    elif change == "cpu":
        monkeypatch.setattr(tune.machine, "cpu_name", lambda: "Intel(R) Xeon(R) Platinum 8480+")
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
    second = len(timer.calls)
    assert second > first
    tune.tune(model, RunnerOptions(max_batch=batch, threads=threads), features=ZEN4, timer=timer)  # cached again
    assert len(timer.calls) == second


def test_core_count_is_part_of_the_key(model):
    import dataclasses

    a = tune.key_for(model, 8, ZEN4, cpuv.variants_for(ZEN4))
    b = tune.key_for(model, 8, dataclasses.replace(ZEN4, cores=16), cpuv.variants_for(ZEN4))
    assert a.digest() != b.digest()


def test_auto_runs_the_measured_winner_and_announces_tuning(model, monkeypatch, caplog):
    timer = FakeTimer({"int8": 0.3, "int8-trt": 0.5, "fp32": 0.1})
    monkeypatch.setattr(tune, "time_variant", timer)
    with caplog.at_level("INFO"):
        chosen = cpu_plan(model, RunnerOptions(max_batch=2), precision="auto")
    assert chosen.artefact == model and chosen.why == "vgg16.onnx: CPU variant fp32 (measured fastest here)"  # fp32 measured fastest here, against the feature order
    assert sum("tuning the CPU path for vgg16.onnx at batch 2" in r.message for r in caplog.records) == 1
    cpu_plan(model, RunnerOptions(max_batch=2), precision="auto")
    assert len(timer.calls) == 12  # the second plan read the cache (2 rounds x 3 variants x call sizes 1, 2)


def test_user_override_and_explicit_precision_win(model, monkeypatch):
    timer = FakeTimer({"int8": 0.3, "int8-trt": 0.5, "fp32": 0.1})
    monkeypatch.setattr(tune, "time_variant", timer)
    monkeypatch.setenv("VGGEDGE_CPU_VARIANT", "int8-trt")
    assert cpu_plan(model, precision="auto").artefact.name == "vgg16.int8.onnx"
    assert cpu_plan(model, precision="auto", variant="int8").artefact.name == "vgg16.int8-cpu.onnx"
    monkeypatch.delenv("VGGEDGE_CPU_VARIANT")
    assert cpu_plan(model, precision="as-given").artefact == model
    assert timer.calls == []  # nothing was timed


def test_override_without_its_file_says_how_to_build(model, monkeypatch):
    (model.parent / "vgg16.int8.onnx").unlink()
    monkeypatch.setenv("VGGEDGE_CPU_VARIANT", "int8-trt")
    with pytest.raises(BackendUnavailable, match=r"vgg16\.int8\.onnx: the int8-trt CPU variant .*vggedge build"):
        cpu_plan(model, precision="auto")


def test_tuning_off_keeps_the_feature_order(model, monkeypatch):
    timer = FakeTimer({})
    monkeypatch.setattr(tune, "time_variant", timer)
    monkeypatch.setenv("VGGEDGE_TUNE", "0")
    assert cpu_plan(model, precision="auto").artefact.name == "vgg16.int8-cpu.onnx"  # variants_for order
    assert timer.calls == []


def test_a_corrupt_cache_entry_is_moved_aside_and_re_tuned(model, caplog):
    timer = FakeTimer({"int8": 0.3, "int8-trt": 0.2, "fp32": 0.9})
    first = tune.tune(model, features=ZEN4, timer=timer)
    path = tune.cache_path(first.key)
    path.write_text(json.dumps({"version": 1, "key": {}}))
    with caplog.at_level("WARNING"):
        again = tune.tune(model, features=ZEN4, timer=timer)
    assert len(timer.calls) == 36 and again.winner == "int8-trt"
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
    cpuv.prepare_variants(fp32, "calib")
    result = tune.tune(fp32, RunnerOptions(max_batch=2), seconds=0.2)
    runnable = [v.key for v in tune.runnable(fp32, cpuf.cpu_features())]
    assert set(result.seconds_per_batch) | set(result.failed) == set(runnable) and len(runnable) >= 3
    assert all(s > 0 for s in result.seconds_per_batch.values()) and result.winner in result.seconds_per_batch
    assert main(["tune", "--model", str(fp32), "--batch-size", "2", "--seconds", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "(cached," in out and f"precision=auto at batch 2 will run {result.winner}" in out
    assert "precision=auto at batch 1 will run" in out  # batch 1 is timed too
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
        chosen = cpu_plan(model, precision="auto")
    assert chosen.artefact.name == "vgg16.int8-cpu.onnx"  # the feature-detection order
    assert "CPU tuning failed" in caplog.text


def test_info_shows_the_cached_winner_and_measures_nothing(model, monkeypatch):
    """`vggedge info --model` names what precision=auto really runs: the tuned winner once there is one."""
    from vggedge.apps.info import model_info

    timer = FakeTimer({"int8": 0.3, "int8-trt": 0.5, "fp32": 0.1})
    monkeypatch.setattr(tune, "time_variant", timer)
    before = model_info(model)["cpu_choice"]
    assert before["variant"] == "int8" and "not tuned yet at this batch" in before["why"] and timer.calls == []
    tune.tune(model, RunnerOptions(max_batch=8), features=ZEN4)
    after = model_info(model)["cpu_choice"]
    assert (after["variant"], after["file"], after["why"]) == ("fp32", str(model), "measured fastest here")
    assert len(timer.calls) == 18  # the tuning above (2 rounds x 3 variants x call sizes 1, 4, 8), nothing more


def test_micro_batch_is_chosen_where_single_calls_are_faster(model, monkeypatch, capsys):
    """The Zen 3 of issue 22: batch 8 runs at half the per-image rate of single images on every engine."""
    zen3 = FakeTimer({"int8": {1: 0.10, 4: 0.50, 8: 1.60}, "int8-trt": {1: 0.12, 4: 0.55, 8: 1.70},
                      "fp32": {1: 0.20, 4: 1.00, 8: 3.00}})
    monkeypatch.setattr(tune, "time_variant", zen3)
    result = tune.tune(model, RunnerOptions(max_batch=8), features=ZEN4)
    assert result.winner == "int8" and result.micro_batch() == 1
    assert result.seconds_per_batch["int8"] == pytest.approx(0.8)  # 8 calls of 1, not one of 8 (1.6 s)
    assert "as calls of 1  <- chosen" in "\n".join(tune.format_table(result))
    runner = cpu_runner(model, RunnerOptions(max_batch=8), precision="auto")
    assert runner.model.name == "vgg16.int8-cpu.onnx" and runner.runner_options.micro_batch == 1
    assert runner.runner_options.max_batch == 8  # the app's batch is unchanged: the split is inside the runner
    single = cpu_runner(model, RunnerOptions(max_batch=1), precision="auto")  # tuned at batch 1 on its own
    assert single.runner_options.micro_batch is None and ("int8", 1) in zen3.calls


def test_whole_batches_where_they_are_faster(model, monkeypatch):
    """Intel AMX in issue 22: 124 img/s at batch 8 against 67 at batch 1."""
    amx = FakeTimer({"int8": {1: 0.015, 4: 0.04, 8: 0.065}, "int8-trt": {1: 0.02, 4: 0.05, 8: 0.08},
                     "fp32": {1: 0.1, 4: 0.3, 8: 0.5}})
    monkeypatch.setattr(tune, "time_variant", amx)
    runner = cpu_runner(model, RunnerOptions(max_batch=8), precision="auto")
    assert runner.model.name == "vgg16.int8-cpu.onnx" and runner.runner_options.micro_batch is None


def test_micro_sizes():
    assert tune.micro_sizes(1) == [1] and tune.micro_sizes(2) == [1, 2] and tune.micro_sizes(8) == [1, 4, 8]
    assert tune.micro_sizes(32) == [1, 16, 32]


def test_rounds_keep_each_variants_fastest_round(model):
    """A busy moment on a shared machine slows one round of one variant: the other round still counts."""
    seen: dict[str, int] = {}

    def timer(variant, fp32, options, seconds):
        seen[variant.key] = seen.get(variant.key, 0) + 1
        busy = variant.key == "int8" and seen["int8"] <= 3  # int8's whole first round ran during a load spike
        return {"int8": 0.1, "int8-trt": 0.2, "fp32": 0.5}[variant.key] * options.max_batch * (5 if busy else 1)
    result = tune.tune(model, RunnerOptions(max_batch=8), features=ZEN4, timer=timer)
    assert result.winner == "int8" and result.seconds_per_batch["int8"] == pytest.approx(0.8)


def test_info_marks_tables_auto_no_longer_uses(model, monkeypatch):
    from vggedge.runtime import cpu_path

    timer = FakeTimer({"int8": 0.3, "int8-trt": 0.2, "fp32": 0.9})
    tune.tune(model, features=ZEN4, timer=timer)
    monkeypatch.setattr(cpu_path, "cpu_features", lambda: ZEN4)
    tables = cpu_path.tuned_tables(model)
    assert [t["current"] for t in tables] == [True]
    assert "(cached," in cpu_path.format_tuned(tables)[0]
    real = tune.package_versions()  # an upgrade: the old table stays on disk, auto no longer reads it
    monkeypatch.setattr(tune, "package_versions", lambda: real + (("onnxruntime", "99.0"),))
    tables = cpu_path.tuned_tables(model)
    assert [t["current"] for t in tables] == [False]
    assert "superseded" in cpu_path.format_tuned(tables)[0]
    lines = cpu_path.format_tuned(tables)
    assert lines[1].split()[0] == "int8-trt" and lines[1].index("ms/batch") == lines[2].index("ms/batch")
