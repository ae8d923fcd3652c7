"""Tests for vggedge.cli: sub-commands through main(), error reporting, and the console script."""
from __future__ import annotations

import errno
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
from small_models import link_model, remove

from vggedge.cli import main
from vggedge.errors import EXIT_PARTIAL, VggEdgeError
from vggedge.model.labels import imagenet_labels
from vggedge.spec import ModelSpec

REPO = Path(__file__).resolve().parents[1]
PHOTOS = [str(p) for p in sorted((REPO / "calib").glob("*.jpg"))[:2]]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory, vgg32) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("cli")
    yield link_model(vgg32("random:3", 1000), folder, "vgg16_32.onnx")
    remove(folder)  # variants beside it: do not leave them in pytest's kept temp folders


def test_export_writes_model_and_spec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sub" / "feat.onnx"
    code = main(["export", "--input-shape", "32,32,3", "--no-include-top", "--pooling", "max",
                 "--weights", "random:1", "--out", str(out)])
    assert code == 0
    spec_file = tmp_path / "sub" / "feat.spec.json"
    assert out.is_file() and spec_file.is_file()
    assert capsys.readouterr().out.splitlines()[0] == f"wrote {out} and {spec_file}"
    spec = ModelSpec.load(spec_file)
    assert (spec.height, spec.width, spec.channels) == (32, 32, 3)
    assert (spec.output_name, spec.output_kind, spec.num_classes) == ("max_pool", "features", None)
    assert spec.weights_source == "random:1"


def test_export_default_classifier(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cls.onnx"
    assert main(["export", "--input-shape", "32,32,3", "--channel-order", "BGR", "--out", str(out)]) == 0
    spec = ModelSpec.load(tmp_path / "cls.spec.json")
    assert (spec.output_name, spec.output_kind, spec.num_classes, spec.labels) == (
        "predictions", "probabilities", 1000, "imagenet")
    assert spec.preprocessing.channel_order == "BGR"
    out.unlink()


def test_classify_json(model_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["classify", "--model", str(model_path), "--json", "--top-k", "4", *PHOTOS])
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["image"] for row in rows] == PHOTOS
    names = imagenet_labels()
    for row in rows:
        assert len(row["top_k"]) == 4
        scores = [p["score"] for p in row["top_k"]]
        assert scores == sorted(scores, reverse=True)
        assert all(p["label"] == names[p["index"]] for p in row["top_k"])


def test_classify_text(model_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["classify", "--model", str(model_path), "--top-k", "2", PHOTOS[0]]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{PHOTOS[0]}:"
    assert len(lines) == 3 and all(line.startswith("  ") and line.endswith(")") for line in lines[1:])


def test_classify_decoder_option_reports_the_choice(model_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str],
                                                    caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("VGGEDGE_DECODER", raising=False)
    assert main(["classify", "--model", str(model_path), "--decoder", "cpu", "--json", PHOTOS[0]]) == 0
    assert [row["decoder"] for row in json.loads(capsys.readouterr().out)] == ["cpu"]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="vggedge"):
        assert main(["classify", "--model", str(model_path), "--top-k", "1", PHOTOS[0]]) == 0
    decoder_lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("decoder ")]
    assert len(decoder_lines) == 1 and decoder_lines[0].startswith("decoder cpu: ")  # auto on a CPU runner, and why
    assert capsys.readouterr().err == ""  # nothing printed outside the log


def test_classify_decoder_gpu_on_a_cpu_runner_is_one_line_naming_why(model_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("VGGEDGE_DECODER", raising=False)
    assert main(["classify", "--model", str(model_path), "--backend", "ort-cpu", "--decoder", "gpu", PHOTOS[0]]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.splitlines()) == 1
    assert captured.err.startswith("vggedge: error: GPU decoding is not possible: the backend (ort-cpu) runs on "
                                   "the CPU")
    monkeypatch.setenv("VGGEDGE_DECODER", "gpu")  # the environment is the default...
    assert main(["classify", "--model", str(model_path), PHOTOS[0]]) == 1
    assert "GPU decoding is not possible" in capsys.readouterr().err
    assert main(["classify", "--model", str(model_path), "--decoder", "auto", PHOTOS[0]]) == 0  # ...the option wins


def test_decoder_option_is_on_every_job(model_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from vggedge.cli import build_parser

    parser = build_parser()
    for argv in (["classify", "x.jpg"], ["bench"], ["batch", "x", "--out", "o.jsonl"], ["stream", "0"]):
        assert parser.parse_args(argv).decoder is None  # unset: VGGEDGE_DECODER, then auto
        assert parser.parse_args([*argv, "--decoder", "gpu"]).decoder == "gpu"
    with pytest.raises(SystemExit):
        parser.parse_args(["classify", "x.jpg", "--decoder", "nvjpeg"])
    assert "invalid choice: 'nvjpeg'" in capsys.readouterr().err


def test_info_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data["backends"]) == {"trt", "ort-cuda", "ort-cpu"}
    assert data["backends"]["ort-cpu"] is None
    assert data["packages"]["vggedge"] == "0.1.0"
    assert {"python", "platform", "cpu", "machine"} <= set(data["machine"])


def test_info_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info"]) == 0
    assert "  ort-cpu: usable" in capsys.readouterr().out.splitlines()


def test_user_error_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.onnx"
    assert main(["classify", "--model", str(missing), "img.jpg"]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith(f"vggedge: error: {missing}: no spec sidecar")
    assert "Traceback" not in captured.err and captured.out == ""


@pytest.mark.parametrize("raised", [
    OSError(errno.ECONNREFUSED, "Connection refused", "http://user:secret@127.0.0.1:9/x.jpg"),
    VggEdgeError("cannot open rtsp://admin:secret@cam/s: refused")], ids=["OSError", "VggEdgeError"])
def test_an_error_line_never_shows_credentials(raised: Exception, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Any error reaching the CLI, ours or the OS's, is one line with passwords redacted; exit 1."""
    from vggedge.cli import COMMANDS

    def fails(args) -> int:
        raise raised
    monkeypatch.setitem(COMMANDS, "info", fails)
    assert main(["info"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("vggedge: error: ") and "secret" not in err
    assert "user:***@127.0.0.1:9" in err or "admin:***@cam" in err


def test_log_lines_never_show_credentials() -> None:
    from vggedge.cli import RedactingFormatter

    record = logging.LogRecord("vggedge", logging.INFO, __file__, 1, "output %s: %s", ("http://u:secret@h:1", "x"),
                               None)
    assert RedactingFormatter("%(levelname)s: %(message)s").format(record) == "INFO: output http://u:***@h:1: x"


def test_classify_unreadable_image(model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["classify", "--model", str(model_path), str(tmp_path / "nope.jpg")]) == EXIT_PARTIAL
    err = capsys.readouterr().err
    assert "vggedge: error:" in err and "nope.jpg: cannot read image file" in err and "Traceback" not in err
    assert "1 of 1 images could not be read (each named above); no results" in err
    assert main(["classify", "--strict", "--model", str(model_path), str(tmp_path / "nope.jpg")]) == 1


def test_export_pooling_with_top(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["export", "--include-top", "--pooling", "avg", "--input-shape", "32,32,3",
                 "--out", str(tmp_path / "x.onnx")])
    assert code == 1
    err = capsys.readouterr().err
    assert "vggedge: error: `pooling` must be `None` when `include_top=True`" in err
    assert "Traceback" not in err
    assert not (tmp_path / "x.onnx").exists()


def test_export_input_too_small(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--input-shape", "10,10,3", "--out", str(tmp_path / "x.onnx")]) == 1
    err = capsys.readouterr().err
    assert "vggedge: error: input_shape (10, 10, 3): height and width must be at least 32" in err


def test_bad_input_shape_text(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["export", "--input-shape", "224x224", "--out", "x.onnx"])
    assert info.value.code == 2
    assert "expected H,W,C such as 224,224,3; got '224x224'" in capsys.readouterr().err


def test_console_script_info() -> None:
    script = Path(sys.executable).with_name("vggedge")
    if not script.exists():
        pytest.skip(f"console script not installed next to {sys.executable}")
    done = subprocess.run([str(script), "info"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "ort-cpu: usable" in done.stdout


def test_info_reports_cpu_path(capsys) -> None:
    assert main(["info", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["cpu"]["features"]["cores"] >= 1
    assert "CPUExecutionProvider" in data["cpu"]["features"]["providers"]
    assert data["cpu"]["variants"][-1].startswith("fp32:")  # FP32 is always the last fallback


@pytest.mark.parametrize("argv, message", [
    (["export", "--out", "x.onnx", "--input-shape", "224,224"], "expected H,W,C such as 224,224,3"),
    (["build", "--batch", "1,8"], "expected MIN,OPT,MAX such as 1,8,32"),
    (["build", "--batch", "1,x,8"], "expected MIN,OPT,MAX such as 1,8,32"),
])
def test_comma_integer_arguments(argv, message, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


# --- engines are found; precision; option checks (issue 10 item 1, issue 11 item 1) ----------------------
@pytest.mark.parametrize("backend", ["auto", "trt"])
def test_classify_uses_built_engine(model_copy: Path, fake_trt_machine, engine_writer, backend: str,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    plan = engine_writer(model_copy)
    assert main(["classify", "--model", str(model_copy), "--backend", backend, "--json", *PHOTOS]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["image"] for r in rows] == PHOTOS and all(len(r["top_k"]) == 5 for r in rows)
    [runner] = fake_trt_machine.runner.made
    assert runner.plan == plan


def test_classify_engine_as_model(model_copy: Path, fake_trt_machine, engine_writer,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    plan = engine_writer(model_copy)
    assert main(["classify", "--model", str(plan), "--top-k", "2", PHOTOS[0]]) == 0
    assert capsys.readouterr().out.startswith(f"{PHOTOS[0]}:\n")
    assert fake_trt_machine.runner.made[0].plan == plan


def test_trt_refuses_engine_for_other_gpu(model_copy: Path, fake_trt_machine, engine_writer,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    engine_writer(model_copy, gpu=("Xavier", "7.2"))
    assert main(["classify", "--model", str(model_copy), "--backend", "trt", PHOTOS[0]]) == 1
    err = capsys.readouterr().err
    assert "backend 'trt' cannot run here: 1 engine(s) found" in err
    assert "GPU name: built for Xavier, this machine has Orin" in err
    assert f"vggedge build --model {model_copy} --precision fp32 --batch 1,8,32" in err


def test_info_model_lists_variants_and_engines(model_copy: Path, fake_trt_machine, engine_writer,
                                               variant_writer, capsys: pytest.CaptureFixture[str]) -> None:
    fp16 = variant_writer(model_copy, "fp16", "fp16")
    plan = engine_writer(fp16)
    other = engine_writer(model_copy, gpu=("Xavier", "7.2"))
    assert main(["info", "--model", str(model_copy), "--precision", "fp16", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [(v["tag"], v["path"]) for v in data["onnx_variants"]] == [("fp32", str(model_copy)), ("fp16", str(fp16))]
    engines = {e["path"]: e for e in data["engines"]}
    assert engines[str(plan)]["status"] == "usable here" and engines[str(plan)]["precision"] == "fp16"
    assert engines[str(other)]["status"].startswith("not usable here: GPU name: built for Xavier")
    assert data["would_run"]["backend"] == "trt" and data["would_run"]["artefact"] == str(plan)
    assert set(data["cpu_choice"]) >= {"variant", "file", "exists"}
    assert main(["info", "--model", str(model_copy)]) == 0
    text = capsys.readouterr().out
    assert "ONNX variants:" in text and f"fp16         fp16  {fp16}" in text
    assert "TensorRT engines:" in text and "usable here" in text
    assert f"would run: ort-cpu on {model_copy} (fp32)\n  why: m.onnx: the model given (fp32, precision as-given)" in text
    assert "skipped trt: 1 engine(s) found" in text and fake_trt_machine.runner.made == []
    assert main(["info", "--model", str(plan)]) == 0  # an engine: its identity, its family, what would run
    text = capsys.readouterr().out
    assert f"  engine: fp16, batch 1,8,32, TensorRT 10.3.0, Orin (sm 8.7), from {fp16}" in text
    assert f"would run: trt on {plan}" in text and fake_trt_machine.runner.made == []


@pytest.mark.parametrize("argv, message", [
    (["classify", "--batch-size", "-1"], "batch_size=-1: expected an integer >= 1"),
    (["classify", "--batch-size", "0"], "batch_size=0: expected an integer >= 1"),
    (["classify", "--top-k", "0"], "k=0: expected an integer >= 1"),
    (["bench", "--batch", "4", "--duration", "0"], "duration=0.0: expected a number of seconds > 0"),
    (["bench", "--batch", "4", "--threads", "0"], "runner option threads=0: expected an integer >= 1 or None"),
])
def test_count_options_checked(model_path: Path, argv: list[str], message: str,
                               capsys: pytest.CaptureFixture[str]) -> None:
    extra = [PHOTOS[0]] if argv[0] == "classify" else []
    assert main([argv[0], "--model", str(model_path), *argv[1:], *extra]) == 1
    captured = capsys.readouterr()
    assert captured.err == f"vggedge: error: {message}\n" and captured.out == ""


HEAVY = ("onnx", "onnxruntime", "tqdm", "vggedge.apps", "vggedge.model", "vggedge.runtime", "vggedge.engine")


def test_cli_import_and_help_load_no_heavy_module() -> None:
    """What the console script imports before main() runs is light (argparse, numpy, OpenCV), so Ctrl-C
    while Python starts rarely meets an import; each command imports its library parts when it runs."""
    code = ("import contextlib, io, sys\nfrom vggedge.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.suppress(SystemExit):\n"
            "    main(['build', '--help'])\n"
            "assert '--min-agreement' in out.getvalue()\n"
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
