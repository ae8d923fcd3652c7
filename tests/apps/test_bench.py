"""vggedge bench: complete JSON, batch parsing, report text, plots. No wall-clock assertions."""
from __future__ import annotations

import json

import pytest
from small_models import link_model

from vggedge.apps.bench import STAGES, bench, format_report, parse_batches
from vggedge.apps.bench.preprocessing import bench_preprocess
from vggedge.cli import main
from vggedge.errors import ConfigError
from vggedge.runtime.select import plan_selection
from vggedge.runtime.base import RunnerOptions


@pytest.fixture(scope="module")
def model(tmp_path_factory, vgg32):
    return link_model(vgg32("random:2", 10), tmp_path_factory.mktemp("bench"))


@pytest.fixture(scope="module")
def report(model):
    return bench(model, "ort-cpu", (1, 3), warmup_s=0.0, duration_s=0.05, min_iters=4, progress=False)


def test_every_iteration_recorded(report):
    assert [r.batch for r in report.results] == [1, 3]
    for r in report.results:
        assert r.iterations >= 4  # inference-only batches
        assert len(r.times["infer"]) == r.iterations
        pipeline = len(r.times["preprocess"])  # pipeline batches (prepare worker), then the intervals between them
        assert pipeline >= 4 and len(r.times["end_to_end"]) == pipeline - 3  # 3 alternating rounds
        for stage in ("preprocess", "infer", "end_to_end"):
            assert all(t > 0 for t in r.times[stage])
        assert r.times["h2d"] == []  # the CPU runner has no copies to report
        assert r.model_throughput == pytest.approx(r.batch / r.summary["infer"]["median"])
        assert r.end_to_end_throughput > 0
        assert r.ratio == pytest.approx(r.end_to_end_throughput / r.model_throughput)


def test_end_to_end_decodes_files_through_run(model, monkeypatch):
    """--end-to-end: the prepare worker (Runner.run) hands the files to the decode pool, which decodes on all cores."""
    import threading

    from vggedge import decode_pool

    callers, decoders = set(), set()
    real_into, real_prepare = decode_pool.DecodePool.prepare_into, decode_pool.prepare

    def spy_into(self, sources, spec, out, **kw):
        callers.add((threading.current_thread().name, type(sources[0]).__name__))
        return real_into(self, sources, spec, out, **kw)

    def spy_prepare(image, spec, **kw):
        decoders.add(threading.current_thread().name.split("_")[0])
        return real_prepare(image, spec, **kw)

    monkeypatch.setattr(decode_pool.DecodePool, "prepare_into", spy_into)
    monkeypatch.setattr(decode_pool, "prepare", spy_prepare)
    report = bench(model, "ort-cpu", (2,), warmup_s=0.0, duration_s=0.02, min_iters=3, progress=False,
                   end_to_end=True, decode_workers=2)
    assert callers == {("ort-cpu-prepare", "PosixPath")}
    assert decoders == {decode_pool.THREAD_PREFIX}  # decoded on the pool's threads, not the prepare worker
    assert report.settings["end_to_end"] is True and "image files" in report.settings["timed"]
    assert report.settings["decode_workers"] == 2
    assert report.results[0].ratio > 0
    assert "JPEG decoding" in format_report(report)


def test_end_to_end_takes_the_reduced_decode_path_when_the_switch_is_on(model, decodes, monkeypatch):
    """`VGGEDGE_REDUCED_DECODE=1 vggedge bench --end-to-end` decodes the files reduced; off by default."""
    kw = dict(warmup_s=0.0, duration_s=0.02, min_iters=3, progress=False, end_to_end=True)
    off = bench(model, "ort-cpu", (2,), **kw)
    assert off.settings["reduced_decode"] is False and decodes.flags and not any(decodes.reduced)
    decodes.flags.clear()
    monkeypatch.setenv("VGGEDGE_REDUCED_DECODE", "1")
    on = bench(model, "ort-cpu", (2,), **kw)
    assert on.settings["reduced_decode"] is True and any(decodes.reduced)
    decodes.flags.clear()
    asked_off = bench(model, "ort-cpu", (2,), reduced_decode=False, **kw)  # the caller's choice wins
    assert asked_off.settings["reduced_decode"] is False and not any(decodes.reduced)


def test_decoder_choice_is_recorded_and_checked(model, monkeypatch):
    """bench(decoder=...): the settings say which decoder ran and why; "gpu" where it cannot is one clear error."""
    from vggedge.errors import BackendUnavailable

    monkeypatch.delenv("VGGEDGE_DECODER", raising=False)
    kw = dict(warmup_s=0.0, duration_s=0.02, min_iters=3, progress=False)
    cpu = bench(model, "ort-cpu", (2,), end_to_end=True, decoder="cpu", **kw)
    assert (cpu.settings["decoder"], cpu.settings["decoder_reason"]) == ("cpu pool", "asked for the CPU decode pool")
    assert "JPEG decoding (cpu pool)" in format_report(cpu)
    auto = bench(model, "ort-cpu", (2,), end_to_end=True, **kw)
    assert "the backend (ort-cpu) runs on the CPU" in auto.settings["decoder_reason"]
    with pytest.raises(BackendUnavailable, match=r"GPU decoding is not possible: the backend \(ort-cpu\) runs"):
        bench(model, "ort-cpu", (2,), end_to_end=True, decoder="gpu", **kw)
    with pytest.raises(ConfigError, match="decoder 'gpu' chooses where image files decode.*--end-to-end"):
        bench(model, "ort-cpu", (2,), decoder="gpu", **kw)
    monkeypatch.setenv("VGGEDGE_DECODER", "gpu")  # the environment's choice applies to --end-to-end only
    assert bench(model, "ort-cpu", (2,), **kw).settings["decoder"] == "cpu pool"
    with pytest.raises(BackendUnavailable, match="GPU decoding is not possible"):
        bench(model, "ort-cpu", (2,), end_to_end=True, **kw)


def test_json_is_complete(report, tmp_path):
    data = json.loads(report.write_json(tmp_path / "b.json").read_text())
    assert data["backend"] == "ort-cpu" and data["precision"] == "fp32"
    assert {"machine", "packages", "runner", "precision", "cpu_count"} <= set(data["environment"])
    assert data["environment"]["machine"]["cpu"]
    assert data["settings"]["min_iters"] == 4 and data["settings"]["batches"] == [1, 3]
    for result in data["results"]:
        assert set(result["times"]) == set(STAGES)
        assert len(result["times"]["infer"]) == result["iterations"]
        assert {"min", "mean", "median", "p90", "p95", "p99", "cv"} <= set(result["summary"]["infer"])


def test_report_text(report):
    text = format_report(report)
    assert "p99" in text and "end_to_end" in text and "ort-cpu" in text


@pytest.mark.parametrize("text, expected", [("1,8", (1, 8)), ("1-32", (1, 2, 4, 8, 16, 32)), ("4", (4,))])
def test_parse_batches(text, expected):
    assert parse_batches(text) == expected


@pytest.mark.parametrize("text", ["a,b", "0,8", ""])
def test_parse_batches_rejects(text):
    with pytest.raises(ConfigError, match="batch sizes"):
        parse_batches(text)


@pytest.mark.parametrize("kwargs, message", [
    (dict(duration_s=0), r"duration=0: expected a number of seconds > 0"),
    (dict(warmup_s=-1), r"warmup=-1: expected a number of seconds >= 0"),
    (dict(min_iters=0), r"min_iters=0: expected an integer >= 1"),
    (dict(batches=(0,)), r"batch size=0: expected an integer >= 1"),
])
def test_bad_settings(model, kwargs, message):
    kwargs = {"batches": (1,), **kwargs}
    with pytest.raises(ConfigError, match=message):
        bench(model, "ort-cpu", **kwargs)


def test_cli_json_and_plot(model, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    rc = main(["bench", "--model", str(model), "--backend", "ort-cpu", "--batch", "2", "--warmup", "0",
               "--duration", "0.05", "--min-iters", "3", "--json", str(tmp_path / "r.json"),
               "--plot", str(tmp_path / "p")])
    assert rc == 0
    assert json.loads((tmp_path / "r.json").read_text())["results"][0]["batch"] == 2
    for name in ("p-latency.png", "p-throughput.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "img/s" in capsys.readouterr().out


def test_preprocess_bench_cases():
    results = bench_preprocess(batch=4, threads=2, repeats=2)
    assert {(r.case, r.threads) for r in results} == {("1 frame 1920x1080", 1), ("batch of 4", 1),
                                                      ("1 frame 1920x1080", 2), ("batch of 4", 2)}
    assert all(r.median_ms > 0 for r in results)


def test_json_with_runner_options(model, tmp_path):
    """--threads passes OrtOptions through runner_options; the JSON still writes."""

    report = bench(model, "ort-cpu", (1,), warmup_s=0.0, duration_s=0.01, min_iters=2, progress=False,
                   options=RunnerOptions(threads=1))
    data = json.loads(report.write_json(tmp_path / "t.json").read_text())
    assert data["settings"]["runner_options"]["threads"] == 1


def test_auto_precision_on_the_cpu_is_labelled_by_the_file_that_runs(cpu_int8_model):
    """`bench --precision auto` on a CPU runs an INT8 variant, and says so (not the FP32 model's precision)."""
    report = bench(cpu_int8_model, "ort-cpu", (2,), precision="auto", warmup_s=0.0, duration_s=0.02, min_iters=3,
                   progress=False)
    assert report.precision == "int8" and report.environment["precision"] == "int8"
    ran = plan_selection(cpu_int8_model, "ort-cpu", precision="auto").artefact  # an INT8 variant, not the model
    assert report.environment["report"]["artefact"] == str(ran) and ran.name.startswith("m.int8")
    assert "| precision int8 |" in format_report(report)
