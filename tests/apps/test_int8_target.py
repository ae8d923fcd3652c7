"""`vggedge build`'s INT8 accuracy report and --min-agreement, on the tiny 4-layer net (fast to quantize)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
import pytest

from vggedge.apps.build import int8_target
from vggedge.apps.accuracy import accuracy_path, load_accuracy
from vggedge.apps.build import build
from vggedge.cli import main
from vggedge.errors import ConfigError
from vggedge.precision.agreement import set_hash, wilson_interval
from vggedge.precision.qdq_check import tensorrt_violations
from vggedge.preprocess import list_images
from vggedge.runtime.select import probe_trt
from vggedge.spec import spec_path_for

REPO = Path(__file__).resolve().parents[2]
CALIB, EVAL = REPO / "calib", REPO / "eval"
pytestmark = pytest.mark.skipif(probe_trt() is None, reason="TensorRT is installed: engines would be built")


@pytest.fixture
def model(tiny_net: Path, tmp_path: Path) -> Path:
    path = tmp_path / "tiny.onnx"
    shutil.copy(tiny_net, path)
    shutil.copy(spec_path_for(tiny_net), spec_path_for(path))
    return path


def test_build_writes_accuracy_report_and_info_shows_it(model: Path, capsys) -> None:
    report = build(model, ("int8",), calib=CALIB)
    path = accuracy_path(report.onnx["int8"])
    assert path == model.with_name("tiny.int8.accuracy.json") and report.accuracy_paths == [path]
    data = json.loads(path.read_text())
    assert data == load_accuracy(report.onnx["int8"]) == report.accuracy
    assert data["views"] == 84 * len(list_images(EVAL)) == 504
    assert data["top1_agree"] == round(data["top1_agreement"] * 504)
    assert data["top1_interval95"] == pytest.approx(list(wilson_interval(data["top1_agree"], 504)))
    assert len(data["flips"]) == 504 - data["top1_agree"]
    assert all(f["ref_top1"] != f["out_top1"] and "#" in f["view"] for f in data["flips"])
    assert data["high_precision_layers"] == []
    from vggedge.runtime.cpu.features import cpu_features
    from vggedge.runtime.cpu.saturation import UNFUSED

    assert data["measured_on"] == UNFUSED and data["isa"] == cpu_features().isa  # never the CPU's kernels (issue 22)
    assert data["calibration"]["method"] == "minmax"
    assert data["calibration"]["set_sha256"] == report.int8.calib_sha256
    assert data["evaluation"] == {"folder": str(EVAL), "photos": 6, "views": 504, "augment": True,
                                  "set_sha256": set_hash(list_images(EVAL))}
    assert main(["info", "--model", str(model)]) == 0
    out = capsys.readouterr().out
    assert f"INT8 accuracy reports:\n  {report.onnx['int8']}:\n      top-1 agreement " in out
    assert (f"{len(data['flips'])} flips ({data['near_tie_flips']} near-ties) in 504 views of 6 photos; "
            "high-precision layers: none") in out
    assert f"[{UNFUSED}; {cpu_features().isa}]" in out
    assert 0 <= data["near_tie_flips"] <= data["near_ties"] <= 504


def test_min_agreement_keeps_the_most_sensitive_layer(model: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(int8_target, "SPEED_SECONDS", 0.2)
    argv = ["build", "--model", str(model), "--precision", "int8", "--min-agreement", "100",
            "--max-kept-layers", "1", "--kept-selection", "ranked"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    int8 = model.with_name("tiny.int8.onnx")
    data = load_accuracy(int8)
    first = data["target"]["sensitivity"][0]["layer"]
    assert data["high_precision_layers"] == [first]
    assert f"high-precision layers: {first};" in out and "ratio" in out
    assert data["target"]["selection"] == "ranked"
    assert data["target"]["min_top1_agreement"] == 1.0 and [len(s["kept"]) for s in data["target"]["steps"]] == [0, 1]
    assert data["speed"]["batch"] == 8 and data["speed"]["ratio"] > 0
    assert tensorrt_violations(onnx.load(str(int8))) == []
    assert not list(model.parent.glob("*plain-*")) and not list(model.parent.glob("*mixed-*"))  # no leftovers


def test_evaluation_overlapping_calibration_is_refused_before_calibrating(model: Path, capsys) -> None:
    with pytest.raises(ConfigError, match="12 of 12 evaluation images are also calibration images"):
        build(model, ("int8",), calib=CALIB, evaluation=CALIB)
    assert not model.with_name("tiny.int8.onnx").exists()
    assert main(["build", "--model", str(model), "--precision", "int8", "--eval", str(CALIB)]) == 1
    assert "are also calibration images" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="min_agreement needs an INT8 build"):
        build(model, ("fp16",), min_agreement=99)
    with pytest.raises(ConfigError, match=r"min_agreement=150: expected a percentage in \(0, 100\]"):
        build(model, ("int8",), min_agreement=150)
    with pytest.raises(ConfigError, match="max_kept_layers=0: expected an integer >= 1"):
        build(model, ("int8",), min_agreement=99, max_kept_layers=0)
    with pytest.raises(ConfigError, match="kept_selection 'cheapest' is unknown"):
        build(model, ("int8",), min_agreement=99, kept_selection="cheapest")
