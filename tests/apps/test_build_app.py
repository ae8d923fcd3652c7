"""`vggedge build` on a machine without TensorRT: every precision's ONNX, no engine, and why."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Iterator

import onnx
import pytest
from small_models import link_model

from vggedge.apps.build import build, format_report
from vggedge.cli import main
from vggedge.errors import ConfigError, ModelError
from vggedge.precision.fp16 import write_fp16
from vggedge.precision.qdq_check import tensorrt_violations
from vggedge.runtime.select import probe_trt
from vggedge.spec import load_spec_for

REPO = Path(__file__).resolve().parents[2]
CALIB = REPO / "calib"
no_tensorrt = pytest.mark.skipif(probe_trt() is None, reason="TensorRT is installed: engines would be built")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory, vgg32) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("build")
    yield link_model(vgg32("random:1", 10), folder)
    shutil.rmtree(folder, ignore_errors=True)  # ~140 MB per model: do not keep it in pytest's temp folders


@no_tensorrt
def test_build_all_precisions_without_tensorrt(model: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="vggedge.apps.build"):
        report = build(model, ("fp32", "fp16", "int8"), calib=CALIB)
    assert set(report.onnx) == {"fp32", "fp16", "int8"}
    assert report.onnx["fp32"] == model
    for precision, path in report.onnx.items():
        assert path.is_file() and load_spec_for(path).precision == precision
    assert report.engines == {}
    assert "tensorrt" in report.no_engine_reason.lower()
    assert any(r.levelno == logging.WARNING and "no TensorRT engine built" in r.getMessage() for r in caplog.records)
    assert report.int8 is not None and report.int8.images == len(list(CALIB.glob("*.jpg")))
    assert tensorrt_violations(onnx.load(report.onnx["int8"])) == []
    text = format_report(report)
    assert "INT8 calibration: minmax" in text and "no TensorRT engine built" in text


def test_build_unknown_precision(model: Path) -> None:
    with pytest.raises(ConfigError, match="'int4'.*unknown"):
        build(model, ("fp16", "int4"))


def test_build_refuses_fp16_input(model: Path, tmp_path: Path) -> None:
    fp16 = write_fp16(model, tmp_path / "half.onnx")
    with pytest.raises(ModelError, match="FP32 ONNX, got a fp16"):
        build(fp16, ("fp16",))
    fp16.unlink()  # ~70 MB: do not keep it in pytest's temp folders


@no_tensorrt
def test_cli_build_fp16(model: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["build", "--model", str(model), "--precision", "fp16"]) == 0
    out = capsys.readouterr().out
    assert "no TensorRT engine built" in out
    assert str(model.with_name("m.fp16.onnx")) in out


def test_built_engine_is_recorded_and_found(model_copy: Path, fake_trt_machine, engine_writer,
                                            monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`vggedge build` records each engine in the model's index, so selection finds it even in --out."""
    from vggedge.apps import build as build_app
    from vggedge.engine import build as engine_build
    from vggedge.runtime.select import select_runner

    monkeypatch.setattr(build_app, "engine_unavailable", lambda: None)
    monkeypatch.setattr(engine_build, "build_engine",
                        lambda onnx_path, out, **kw: engine_writer(Path(onnx_path), Path(out)))
    out = tmp_path / "elsewhere"
    out.mkdir()
    report = build(model_copy, ("fp32",), out_dir=out)
    assert report.engines["fp32"].parent == out
    chosen = select_runner(model_copy, "trt")
    assert chosen.artefact == report.engines["fp32"]


@pytest.mark.parametrize("size", [0, -1.5])
def test_build_checks_workspace_first(size: float, monkeypatch: pytest.MonkeyPatch) -> None:
    from vggedge.apps import build as build_app

    monkeypatch.setattr(build_app, "precision_artefacts", lambda *a, **k: pytest.fail("checked too late"))
    with pytest.raises(ConfigError, match=rf"workspace_gb={size!r}: expected a number > 0 \(GiB\)"):
        build("m.onnx", ("fp16",), workspace_gb=size)
