"""`vggedge build --precision int8` under concurrency, interruption, corrupt caches and bad calibration images."""
from __future__ import annotations

import hashlib
import os
import json
import shutil
import signal
from pathlib import Path

import onnx
import pytest

from faultkit import CALIB, interrupt_after, start, strays, tree, vggedge

INT8 = ["build", "--precision", "int8"]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_int8_complete(model: Path) -> None:
    """The INT8 artefact under its final name loads, is quantized, and has its sidecar."""
    int8 = model.with_name("m.int8.onnx")
    graph = onnx.load(str(int8))
    assert any(n.op_type == "QuantizeLinear" for n in graph.graph.node)
    assert json.loads(model.with_name("m.int8.spec.json").read_text())["precision"] == "int8"


def test_two_concurrent_int8_builds_both_succeed_with_one_result(model_copy: Path) -> None:
    first = start([*INT8, "--model", model_copy])
    second = start([*INT8, "--model", model_copy])
    results = [p.communicate(timeout=600) + (p.returncode,) for p in (first, second)]
    for out, err, code in results:
        assert code == 0, err
        assert "Traceback" not in err and "FileNotFoundError" not in err
        assert f"int8 ONNX: {model_copy.with_name('m.int8.onnx')}" in out
    assert_int8_complete(model_copy)
    assert strays(model_copy.parent, allowed=["m.onnx", "m.int8.onnx"]) == []
    # the second waited for the first, then reused its result (the same bytes, not a second build)
    assert sum("reused" in out for out, _, _ in results) == 1
    built = sha(model_copy.with_name("m.int8.onnx"))
    rerun = vggedge(*INT8, "--model", model_copy)
    assert rerun.returncode == 0 and "reused" in rerun.stdout
    assert sha(model_copy.with_name("m.int8.onnx")) == built


@pytest.mark.parametrize("delay, copies, sig", [(1.0, 1, signal.SIGINT), (3.0, 2, signal.SIGINT),
                                               pytest.param(10.0, 4, signal.SIGINT, marks=pytest.mark.slow),
                                               (1.0, 1, signal.SIGTERM)], ids=["int-1s", "int-3s", "int-10s", "term-1s"])
def test_interrupted_int8_build_leaves_no_partial_files_and_reruns(slow_model_copy: Path, tmp_path: Path,
                                                                   delay: float, copies: int, sig: int) -> None:
    """SIGINT 1, 3 and 10 s into a 224x224 INT8 build (24 and 48 images for 3 and 10 s: still running).

    SIGTERM (``kill``, ``systemctl stop``) stops the same clean way as Ctrl-C.
    """
    model = slow_model_copy
    calib = tmp_path / "calib"
    calib.mkdir()
    for i in range(copies):
        for path in sorted(CALIB.glob("*.jpg")):
            shutil.copy(path, calib / f"{i}-{path.name}")
    before = set(tree(model.parent))
    result = interrupt_after(start([*INT8, "--model", model, "--calib", calib]), "INT8: building", delay,
                             sig=sig)
    if result.returncode == 0:  # a fast (idle) machine finished before the signal: then it must be complete
        assert_int8_complete(model)
    else:
        assert result.returncode == 130, result.stderr
        assert result.stderr.rstrip().endswith("vggedge: interrupted; partial files were removed and finished "
                                               "ones kept")
        assert "Traceback" not in result.stderr
        if model.with_name("m.int8.onnx").exists():  # finished before the signal (e.g. during its accuracy
            assert_int8_complete(model)               # report): a finished artefact is kept, whole
    assert strays(model.parent, allowed=["m.onnx", "m.int8.onnx"]) == []  # nothing bigger than a sidecar
    assert before <= set(tree(model.parent))  # nothing that existed was removed
    # the rerun skips the accuracy report (504 evaluation views at 224x224: minutes on 2 cores), which
    # tests/apps/test_build_app.py and test_int8_target.py cover; what is checked here is that a rerun builds
    rerun = vggedge(*INT8, "--model", model, "--calib", calib, "--eval", "none")
    assert rerun.returncode == 0, rerun.stderr
    assert_int8_complete(model)
    assert strays(model.parent, allowed=["m.onnx", "m.int8.onnx"]) == []


def test_corrupt_calibration_cache_is_moved_aside_and_recomputed(model_copy: Path, photos: Path) -> None:
    # the calibration cache is the subject: these four builds skip the accuracy report (--eval none)
    first = vggedge(*INT8, "--model", model_copy, "--calib", photos, "--eval", "none")
    assert first.returncode == 0, first.stderr
    cache_dir = model_copy.parent / "calibration-cache"
    [entry] = [p for p in cache_dir.glob("*.json")]
    good = json.loads(entry.read_text())
    for corrupt in ("{}", '{"calibration_method": "x"', ""):
        entry.write_text(corrupt)
        model_copy.with_name("m.int8.onnx").unlink()  # so the build needs the cache again
        again = vggedge(*INT8, "--model", model_copy, "--calib", photos, "--eval", "none")
        assert again.returncode == 0, again.stderr
        assert f"calibration cache entry {entry} is unusable" in again.stderr
        assert "recalibrating" in again.stderr and "Traceback" not in again.stderr
        assert json.loads(entry.read_text())["data"].keys() == good["data"].keys()
        assert_int8_complete(model_copy)
    assert len(list(cache_dir.glob("*.corrupt-*"))) >= 1  # kept for the user to inspect, not deleted


def test_unreadable_calibration_images_are_skipped_and_listed(model_copy: Path, photos: Path) -> None:
    (photos / "zero.jpg").write_bytes(b"")
    (photos / "text.png").write_text("not an image")
    (photos / "cut.jpg").write_bytes((CALIB / "coffee.jpg").read_bytes()[:200])
    result = vggedge(*INT8, "--model", model_copy, "--calib", photos)
    assert result.returncode == 0, result.stderr
    assert "skipping 3 unreadable calibration image(s) of 15" in result.stderr
    for name in ("zero.jpg", "text.png", "cut.jpg"):
        assert name in result.stderr and name in result.stdout
    assert "INT8 calibration: minmax on 12 images" in result.stdout
    calibration = json.loads(model_copy.with_name("m.int8.spec.json").read_text())["extra"]["calibration"]
    assert calibration["images"] == 12 and len(calibration["skipped"]) == 3


def test_too_few_readable_calibration_images_is_refused(model_copy: Path, tmp_path: Path) -> None:
    folder = tmp_path / "mostly-broken"
    folder.mkdir()
    shutil.copy(CALIB / "coffee.jpg", folder / "coffee.jpg")
    for i in range(3):
        (folder / f"broken{i}.jpg").write_bytes(b"\xff\xd8 nope")
    result = vggedge(*INT8, "--model", model_copy, "--calib", folder)
    assert result.returncode == 1
    assert f"vggedge: error: {folder}: only 1 of 4 calibration images are readable; at least 2 are needed" \
        in result.stderr
    assert not model_copy.with_name("m.int8.onnx").exists()
    assert strays(model_copy.parent, allowed=["m.onnx"]) == []


def test_build_beside_read_only_model_writes_only_to_out(model_copy: Path, tmp_path: Path) -> None:
    """--out takes every artefact, so the model's folder (read-only in real use) gets nothing, not even temporaries."""
    before = tree(model_copy.parent)
    out = tmp_path / "out"
    result = vggedge(*INT8, "--model", model_copy, "--out", out)
    assert result.returncode == 0, result.stderr
    assert tree(model_copy.parent) == before
    assert (out / "m.int8.onnx").is_file() and (out / "m.int8.spec.json").is_file()
    assert strays(out, allowed=["m.int8.onnx"]) == []


def test_fixed_batch_model_calibrates_with_a_padded_last_batch(model_copy: Path, tmp_path: Path) -> None:
    graph = onnx.load(str(model_copy))
    graph.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 4
    graph.graph.output[0].type.tensor_type.shape.dim[0].dim_value = 4
    fixed = tmp_path / "fixed" / "m.onnx"
    fixed.parent.mkdir()
    onnx.save(graph, str(fixed))
    spec = json.loads(model_copy.with_name("m.spec.json").read_text())
    fixed.with_name("m.spec.json").write_text(json.dumps({**spec, "fixed_batch": 4}))
    five = tmp_path / "five"
    five.mkdir()
    for path in sorted(CALIB.glob("*.jpg"))[:5]:  # batches of 4 and 1: the 1 is padded to 4
        shutil.copy(path, five / path.name)
    result = vggedge(*INT8, "--model", fixed, "--calib", five)
    assert result.returncode == 0, result.stderr
    assert "INT8 calibration: minmax on 5 images" in result.stdout
    dims = onnx.load(str(fixed.with_name("m.int8.onnx"))).graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_value == 4
    shutil.rmtree(fixed.parent)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_build_beside_a_read_only_model_without_out_says_how(model_copy: Path) -> None:
    model_copy.parent.chmod(0o555)
    try:
        result = vggedge(*INT8, "--model", model_copy)
    finally:
        model_copy.parent.chmod(0o755)
    assert result.returncode == 1
    assert f"folder {model_copy.parent} is not writable" in result.stderr
    assert "`vggedge build --out DIR`" in result.stderr
