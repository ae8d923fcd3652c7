"""`vggedge compare`: FP16/INT8 agreement with FP32 on a small (32x32, 10-class) VGG16."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from vggedge.apps.compare import CompareReport, VariantStats, check_min_top1, compare_models, views
from vggedge.cli import main
from vggedge.errors import VggEdgeError
from vggedge.model.export import export_vgg16
from vggedge.model.vgg16 import VGG16Options
from vggedge.precision.fp16 import write_fp16
from vggedge.precision.int8 import quantize_int8

REPO = Path(__file__).resolve().parents[2]
CALIB = REPO / "calib"
OPTS = VGG16Options(include_rescaling=False, include_top=True, num_classes=10, input_shape=(32, 32, 3))


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    folder = tmp_path_factory.mktemp("compare")
    fp32 = export_vgg16("random:1", folder / "m.onnx", OPTS).onnx_path
    yield {"fp32": fp32, "fp16": write_fp16(fp32), "int8": quantize_int8(fp32, CALIB, limit=4).path}
    shutil.rmtree(folder, ignore_errors=True)  # ~300 MB of models: do not keep them in pytest's temp folders


@pytest.fixture(scope="module")
def report(models: dict[str, Path]) -> CompareReport:
    return compare_models(models, CALIB, backend="ort-cpu")


def test_compare_fp16_agrees(report: CompareReport, models: dict[str, Path]) -> None:
    assert report.images == len(list(CALIB.glob("*.jpg"))) and report.reference == "fp32"
    assert report.output_kind == "probabilities"
    fp16, int8 = report.variants
    assert (fp16.name, int8.name) == ("fp16", "int8")
    assert fp16.model == str(models["fp16"]) and fp16.backend == "ort-cpu"
    assert fp16.top1_agreement == 1.0 and fp16.cosine_min > 0.999
    assert 0.0 <= int8.top1_agreement <= 1.0 and 0.0 <= int8.top5_overlap <= 1.0
    for v in report.variants:
        assert v.cosine_min <= v.cosine_mean <= 1.0 + 1e-6
        assert 0.0 <= v.mean_abs_diff <= v.max_abs_diff


def test_compare_json_has_all_fields(report: CompareReport) -> None:
    data = json.loads(report.to_json())
    assert set(data) == {"images", "reference", "output_kind", "variants"}
    fields = {f.name for f in dataclasses.fields(VariantStats)}
    assert [set(v) for v in data["variants"]] == [fields, fields]
    assert data["variants"][0]["top1_agreement"] == report.variants[0].top1_agreement


def test_check_min_top1_names_variants(report: CompareReport) -> None:
    check_min_top1(report, 0.0)  # nothing is below 0%
    with pytest.raises(VggEdgeError, match=r"below 101\.0%: fp16 100\.0%, int8"):
        check_min_top1(report, 1.01)


def test_cli_compare_threshold(models: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    argv = ["compare", f"a={models['fp32']}", f"b={models['fp16']}", "--backend", "ort-cpu",
            "--min-top1-agreement", "101"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0].startswith(f"{len(list(CALIB.glob('*.jpg')))} images, reference a") and "top-1 agr" in lines[1]
    assert lines[2].split()[:3] == ["b", "ort-cpu", "100.0%"]
    assert "top-1 agreement with a below 101.0%: b 100.0%" in captured.err


def test_views_shapes_and_content() -> None:
    image = np.arange(100 * 50 * 3, dtype=np.uint32).reshape(100, 50, 3).astype(np.uint8)
    got = list(views(image))
    assert len(got) == 7
    assert [v.shape for v in got] == [(100, 50, 3)] * 2 + [(80, 40, 3)] * 5
    np.testing.assert_array_equal(got[0], image)
    np.testing.assert_array_equal(got[1], image[:, ::-1])
    np.testing.assert_array_equal(got[2], image[:80, :40])
    np.testing.assert_array_equal(got[5], image[20:, 10:])
    np.testing.assert_array_equal(got[6], image[10:90, 5:45])
