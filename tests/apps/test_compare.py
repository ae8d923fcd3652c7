"""`vggedge compare`: FP16/INT8 agreement with FP32 on a small (32x32, 10-class) VGG16."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from small_models import link_model

from vggedge.apps.compare import (CompareReport, VariantStats, agreement, check_min_top1, compare_models,
                                  format_report, load_named_views, name_models, run_model, unique_names)
from vggedge.precision.views import VIEWS_PER_PHOTO, augmented_views, view_names
from vggedge.cli import main
from vggedge.errors import EXIT_PARTIAL, ConfigError, ImageError, VggEdgeError
from vggedge.precision.fp16 import write_fp16
from vggedge.precision.int8 import quantize_int8

REPO = Path(__file__).resolve().parents[2]
CALIB = REPO / "calib"
EVAL = REPO / "eval"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, vgg32) -> Iterator[dict[str, Path]]:
    folder = tmp_path_factory.mktemp("compare")
    fp32 = link_model(vgg32("random:1", 10), folder)
    yield {"fp32": fp32, "fp16": write_fp16(fp32), "int8": quantize_int8(fp32, CALIB, limit=4).path}
    shutil.rmtree(folder, ignore_errors=True)  # ~300 MB of models: do not keep them in pytest's temp folders


@pytest.fixture(scope="module")
def report(models: dict[str, Path]) -> CompareReport:
    return compare_models(models, EVAL, backend="ort-cpu")


def test_compare_fp16_agrees(report: CompareReport, models: dict[str, Path]) -> None:
    assert report.images == len(list(EVAL.glob("*.jpg"))) and report.reference == "fp32"
    assert report.calibration == [str(CALIB)] and report.overlap == []  # the INT8 sidecar names its calib/
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
    assert set(data) == {"images", "reference", "output_kind", "variants", "failed", "sources", "calibration",
                         "overlap"}
    assert data["failed"] == [] and data["sources"] == data["images"]
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
    lines = captured.out.splitlines()  # the default evaluation set is eval/
    assert lines[0].startswith(f"{len(list(EVAL.glob('*.jpg')))} images, reference a") and "top-1 agr" in lines[1]
    assert lines[2].split()[:5] == ["b", "ort-cpu", "100.0%", "61.0-100.0%", "0"]  # Wilson for 6/6
    assert "top-1 agreement with a below 101.0%: b 100.0%" in captured.err


def test_augmented_views_documented_and_deterministic() -> None:
    image = np.arange(100 * 50 * 3, dtype=np.uint32).reshape(100, 50, 3).astype(np.uint8)
    got = list(augmented_views(image))
    assert len(got) == VIEWS_PER_PHOTO == 84 and [n for n, _ in got] == view_names()
    assert len(set(view_names())) == 84
    names = dict(got)
    np.testing.assert_array_equal(names["orig"], image)
    np.testing.assert_array_equal(names["flip+orig"], image[:, ::-1])
    np.testing.assert_array_equal(names["crop80-tl"], image[:80, :40])
    np.testing.assert_array_equal(names["crop80-br"], image[20:, 10:])
    np.testing.assert_array_equal(names["crop80-c"], image[10:90, 5:45])
    np.testing.assert_array_equal(names["flip+crop80-tl"], image[:80, ::-1][:, :40])
    assert names["scale0.5"].shape == (50, 25, 3) and names["rot+3"].shape == image.shape
    assert names["bright+20"].astype(int).mean() > image.mean() > names["bright-20"].astype(int).mean()
    for name in ("jpeg10", "blur3", "noise4", "contrast1.2", "gamma0.7"):
        assert names[name].shape == image.shape and names[name].dtype == np.uint8
        assert not np.array_equal(names[name], image), name
    again = dict(augmented_views(image))  # the same views on every call (seeded noise)
    assert all(np.array_equal(again[n], v) for n, v in got)


def test_load_named_views_names_each_view(tmp_path: Path) -> None:
    photo = sorted(EVAL.glob("*.jpg"))[0]
    names, decoded, failed = load_named_views([photo], augment=True)
    assert len(decoded) == 84 and failed == [] and names[0] == f"{photo.name}#orig"
    assert names[-1] == f"{photo.name}#flip+noise8"


def test_default_evaluation_split_is_500_views_calibration_never_saw() -> None:
    from vggedge.paths import CALIB_DIR, EVAL_DIR
    from vggedge.precision.agreement import shared_images

    photos = sorted(EVAL_DIR.glob("*.jpg"))
    assert len(photos) * VIEWS_PER_PHOTO >= 500
    assert shared_images(photos, sorted(CALIB_DIR.glob("*.jpg"))) == []
    assert all(p.stat().st_size < 150_000 for p in photos)
    sources = (CALIB_DIR / "SOURCES.md").read_text()
    assert all(f"eval/{p.name}" in sources for p in photos)


def test_flip_listing_on_a_constructed_case() -> None:
    ref = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.3, 0.3, 0.4], [0.5, 0.45, 0.05]])
    out = np.array([[0.6, 0.3, 0.1], [0.1, 0.3, 0.6], [0.3, 0.3, 0.4], [0.45, 0.5, 0.05]])
    stats = agreement("int8", "m.int8.onnx", "ort-cpu", ref, out, ["a", "b", "c", "d"], labels=["x", "y", "z"])
    assert (stats.top1_agree, stats.top1_agreement) == (2, 0.5)
    assert [(f["view"], f["ref_label"], f["out_label"]) for f in stats.flips] == [("b", "y", "z"), ("d", "x", "y")]
    assert stats.flips[0]["ref_margin"] == pytest.approx(0.3) and stats.flips[0]["out_margin"] == pytest.approx(0.3)
    assert stats.flips[1]["ref_margin"] == pytest.approx(0.05) and stats.flips[1]["out_margin"] == pytest.approx(0.05)
    assert stats.per_class == [{"index": 0, "label": "x", "views": 2, "agree": 1},
                               {"index": 1, "label": "y", "views": 1, "agree": 0},
                               {"index": 2, "label": "z", "views": 1, "agree": 1}]
    assert stats.top1_low == pytest.approx(0.1500, abs=1e-4) and stats.top1_high == pytest.approx(0.8500, abs=1e-4)
    assert stats.kl_mean > 0 and stats.kl_max >= stats.kl_mean
    report = CompareReport(4, "fp32", "probabilities", [stats], sources=4)
    text = format_report(report)
    assert "int8: 2 flipped" in text and "  b: y 0.3 -> z 0.3" in text and "  d: x 0.05 -> y 0.05" in text
    assert "int8 per class: x 1/2, y 0/1, z 1/1" in text
    assert (stats.near_ties, stats.near_tie_flips) == (0, 0)  # d: 0.45 / 0.5 is no near-tie (log ratio 0.105)
    assert "0 of them near-ties (the reference has 0 views whose runner-up is within 0.05" in text


def test_overlapping_sets_refused_or_warned(models: dict[str, Path], tmp_path: Path, caplog, capsys) -> None:
    """An evaluation folder sharing a photo (renamed, re-saved losslessly) with calibration is refused."""
    import cv2

    for photo in sorted(EVAL.glob("*.jpg"))[:2]:
        shutil.copy(photo, tmp_path / photo.name)
    shared = sorted(CALIB.glob("*.jpg"))[0]
    cv2.imwrite(str(tmp_path / "renamed.png"), cv2.imread(str(shared)))  # same pixels, other name and format
    pair = {"a": models["fp32"], "b": models["fp16"]}
    with pytest.raises(ConfigError, match=r"1 of 3 evaluation images are also calibration images.*renamed\.png = "
                                           + str(shared).replace(".", r"\.")):
        compare_models(pair, tmp_path, backend="ort-cpu", calibration=[CALIB])
    with pytest.raises(ConfigError, match="renamed.png"):  # the INT8 sidecar's calibration folder is checked too
        compare_models({"a": models["fp32"], "c": models["int8"]}, tmp_path, backend="ort-cpu")
    report = compare_models(pair, tmp_path, backend="ort-cpu", calibration=[CALIB], allow_overlap=True)
    assert report.overlap == [{"image": str(tmp_path / "renamed.png"), "calibration_image": str(shared)}]
    assert "WARNING: 1 of 3 evaluation images are also calibration images" in caplog.text
    assert "WARNING: 1 evaluation images are calibration images too" in format_report(report)
    argv = ["compare", str(models["fp32"]), str(models["fp16"]), "--backend", "ort-cpu", "--images", str(tmp_path),
            "--calib", str(CALIB)]
    assert main(argv) == 1 and "are also calibration images" in capsys.readouterr().err
    assert main(argv + ["--allow-overlap"]) == 0


def test_same_file_name_in_two_folders_is_two_models(models: dict[str, Path], tmp_path: Path, capsys) -> None:
    """Issue 11 item 10: a/vgg16.onnx and b/vgg16.onnx are two models, shown with unique names."""
    paths = []
    for folder, source in (("a", models["fp32"]), ("b", models["fp16"])):
        (tmp_path / folder).mkdir()
        target = tmp_path / folder / "vgg16.onnx"
        target.hardlink_to(source)
        shutil.copy(source.with_name(source.stem + ".spec.json"), tmp_path / folder / "vgg16.spec.json")
        paths.append(str(target))
    few = tmp_path / "few"
    few.mkdir()
    for photo in sorted(CALIB.glob("*.jpg"))[:2]:
        shutil.copy(photo, few / photo.name)
    assert main(["compare", *paths, "--backend", "ort-cpu", "--images", str(few)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "2 images, reference a/vgg16.onnx (outputs: probabilities)"
    assert lines[2].split()[:2] == ["b/vgg16.onnx", "ort-cpu"]


def test_unique_names_and_name_models() -> None:
    assert unique_names(["x/a/m.onnx", "y/a/m.onnx", "z/n.onnx"]) == ["x/a/m.onnx", "y/a/m.onnx", "n.onnx"]
    assert unique_names(["m.onnx", "m.onnx"]) == ["m.onnx", "m.onnx#2"]
    assert name_models(["ref=a/m.onnx", "b/m.onnx", "c/m.onnx"]) == {"ref": "a/m.onnx", "b/m.onnx": "b/m.onnx",
                                                                      "c/m.onnx": "c/m.onnx"}
    with pytest.raises(ConfigError, match=r"model name 'x' is given twice \(a\.onnx and b\.onnx\)"):
        name_models(["x=a.onnx", "x=b.onnx"])


@pytest.mark.parametrize("size", ["0", "-1"])
def test_batch_size_checked(models: dict[str, Path], size: str, capsys) -> None:
    assert main(["compare", str(models["fp32"]), str(models["fp16"]), "--batch-size", size]) == 1
    err = capsys.readouterr().err
    assert err == f"vggedge: error: batch_size={size}: expected an integer >= 1\n"


def test_bad_images_reported_and_left_out(models: dict[str, Path], tmp_path: Path, capsys) -> None:
    for photo in sorted(CALIB.glob("*.jpg"))[:3]:
        shutil.copy(photo, tmp_path / photo.name)
    (tmp_path / "zero.jpg").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image")
    report = compare_models({"a": models["fp32"], "b": models["fp16"]}, tmp_path, backend="ort-cpu")
    assert report.images == 3 and report.sources == 5
    assert [Path(f["image"]).name for f in report.failed] == ["text.png", "zero.jpg"]
    assert "image file is empty" in report.failed[1]["error"]
    with pytest.raises(ImageError, match=r"text\.png: not a decodable image"):
        compare_models({"a": models["fp32"], "b": models["fp16"]}, tmp_path, backend="ort-cpu", strict=True)
    argv = ["compare", f"a={models['fp32']}", f"b={models['fp16']}", "--backend", "ort-cpu", "--images", str(tmp_path)]
    assert main(argv) == EXIT_PARTIAL
    captured = capsys.readouterr()
    assert captured.out.startswith("3 images, reference a")
    assert "text.png: not a decodable image" in captured.err and "zero.jpg: image file is empty" in captured.err
    assert "2 of 5 images could not be read" in captured.err


def test_run_model_goes_through_run_and_copies_once(models: dict[str, Path], monkeypatch) -> None:
    """compare's inference path is Runner.run() (copy=False views, copied once into the result)."""
    from vggedge.runtime.base import Runner

    calls = []
    real = Runner.run

    def spy(self, batches, prepare=None, *, copy=True):
        calls.append((prepare is not None, copy))
        return real(self, batches, prepare, copy=copy)

    monkeypatch.setattr(Runner, "run", spy)
    frames = [np.full((40, 50, 3), v, np.uint8) for v in (10, 90, 200)]
    out, backend = run_model(models["fp32"], frames, "ort-cpu", 2)
    assert calls == [(True, False)] and backend == "ort-cpu" and out.shape == (3, 10)
    assert out.flags.owndata or out.base is not None and out.base.flags.owndata
