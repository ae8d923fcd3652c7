"""engine/registry.py: engines are found for their model and checked against this (fake) machine."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from vggedge.engine import registry
from vggedge.engine.identity import EngineIdentity, sidecar_path
from vggedge.engine.registry import Machine, engines_for, find_engine, index_path, record_engine
from vggedge.spec import load_spec_for

HERE = Machine("10.3.0", "Orin", "8.7")


def test_engine_found_beside_model_and_matched(model_copy: Path, engine_writer) -> None:
    plan = engine_writer(model_copy)
    [record] = engines_for(model_copy, folders=[model_copy.parent])
    assert record.plan == plan and record.identity.precision == "fp32"
    choice = find_engine(model_copy, max_batch=8, folders=[model_copy.parent], machine=HERE)
    assert choice.plan == plan and choice.reason is None
    assert EngineIdentity.load(plan).spec == load_spec_for(model_copy).replace(precision="fp32")


def test_engine_of_another_model_is_not_listed(model_copy: Path, ten_class_model: Path, engine_writer,
                                               variant_writer, tmp_path: Path) -> None:
    other = variant_writer(model_copy, "fp16", "fp16")
    other_folder = tmp_path / "other"
    other_folder.mkdir()
    moved = other_folder / "x.onnx"
    shutil.move(other, moved)
    shutil.move(other.with_name("m.fp16.spec.json"), other_folder / "x.spec.json")
    engine_writer(moved, model_copy.parent)  # built from another ONNX, lying beside ours
    assert engines_for(model_copy, folders=[model_copy.parent]) == []
    choice = find_engine(model_copy, folders=[model_copy.parent], machine=HERE)
    assert choice.plan is None
    assert choice.reason == (f"no TensorRT engine built for {model_copy} (build one with: vggedge build --model "
                             f"{model_copy} --precision fp32 --batch 1,8,32)")


@pytest.mark.parametrize("built, difference", [
    (dict(gpu=("Xavier", "7.2")), "GPU name: built for Xavier, this machine has Orin"),
    (dict(trt_version="8.6.2"), "TensorRT version: built with 8.6.2, this machine has 10.3.0"),
])
def test_mismatch_reason_has_rebuild_command(model_copy: Path, engine_writer, built, difference) -> None:
    plan = engine_writer(model_copy, **built)
    choice = find_engine(model_copy, folders=[model_copy.parent], machine=HERE)
    assert choice.plan is None
    assert f"1 engine(s) found for {model_copy}, none usable here: {plan} cannot be used here" in choice.reason
    assert difference in choice.reason
    assert f"vggedge build --model {model_copy} --precision fp32 --batch 1,8,32" in choice.reason


def test_batch_beyond_profile_is_refused(model_copy: Path, engine_writer) -> None:
    engine_writer(model_copy, batch=(1, 4, 8))
    choice = find_engine(model_copy, max_batch=16, folders=[model_copy.parent], machine=HERE)
    assert choice.plan is None and "batch size: built for 1..8, requested 16" in choice.reason
    assert "--batch 1,4,16" in choice.reason


def test_precision_picks_among_engines(model_copy: Path, engine_writer, variant_writer) -> None:
    fp32 = engine_writer(model_copy)
    fp16 = engine_writer(variant_writer(model_copy, "fp16", "fp16"))
    int8 = engine_writer(variant_writer(model_copy, "int8", "int8"))
    folders = [model_copy.parent]
    pick = {p: find_engine(model_copy, precision=p, folders=folders, machine=HERE).plan
            for p in ("as-given", "auto", "fp32", "fp16", "int8")}
    assert pick == {"as-given": fp32, "auto": int8, "fp32": fp32, "fp16": fp16, "int8": int8}
    assert find_engine(model_copy.with_name("m.fp16.onnx"), folders=folders, machine=HERE).plan == fp16


def test_build_index_finds_engines_elsewhere(model_copy: Path, engine_writer, tmp_path: Path) -> None:
    elsewhere = tmp_path / "out"
    elsewhere.mkdir()
    plan = engine_writer(model_copy, elsewhere)
    assert engines_for(model_copy, folders=[model_copy.parent]) == []
    assert record_engine(model_copy, plan) == index_path(model_copy)
    assert record_engine(model_copy, plan) == index_path(model_copy)  # recorded once
    assert json.loads(index_path(model_copy).read_text()) == {"engines": [str(plan.resolve())]}
    assert [r.plan for r in engines_for(model_copy, folders=[model_copy.parent])] == [plan]


def test_unreadable_sidecar_is_skipped(model_copy: Path, engine_writer, caplog) -> None:
    plan = engine_writer(model_copy)
    sidecar_path(plan).write_text("{")
    assert engines_for(model_copy, folders=[model_copy.parent]) == []
    assert "skipping engine" in caplog.text and "not valid JSON" in caplog.text


def test_this_machine_reads_fake_tensorrt_and_gpu(fake_trt_machine) -> None:
    assert registry.this_machine() == Machine("10.3.0", "Orin", "8.7")
