"""Tests for vggedge.cli: sub-commands through main(), error reporting, and the console script."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from vggedge.cli import main
from vggedge.model.export import export_vgg16
from vggedge.model.labels import imagenet_labels
from vggedge.model.vgg16 import VGG16Options
from vggedge.spec import ModelSpec

REPO = Path(__file__).resolve().parents[1]
PHOTOS = [str(p) for p in sorted((REPO / "calib").glob("*.jpg"))[:2]]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("cli") / "vgg16_32.onnx"
    opts = VGG16Options(include_rescaling=False, include_top=True, num_classes=1000, input_shape=(32, 32, 3))
    export_vgg16("random:3", path, opts)
    yield path
    path.unlink()  # 150 MB: do not leave it in pytest's kept temp folders


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


def test_classify_unreadable_image(model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["classify", "--model", str(model_path), str(tmp_path / "nope.jpg")]) == 1
    err = capsys.readouterr().err
    assert "vggedge: error:" in err and "nope.jpg: cannot read image file" in err and "Traceback" not in err


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
