"""A variant written from another model (the FP32 file was re-exported since) is never run nor matched."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import onnx
import pytest
from onnx import numpy_helper

from vggedge.catalogue import onnx_for_precision, onnx_variants, recorded_source, stale_reason
from vggedge.errors import ModelError, VggEdgeError
from vggedge.precision.fp16 import write_fp16
from vggedge.precision.int8 import quantize_int8
from vggedge.runtime.cpu import features as cpuf, variants as cpuv, planner as cpup
from vggedge.runtime.select import select_runner
from vggedge.spec import spec_path_for

CALIB = Path(__file__).resolve().parents[2] / "calib"


def reexport(model: Path) -> None:
    """The same file name, other weights: what `vggedge export` over an existing model does."""
    proto = onnx.load(str(model))
    for init in proto.graph.initializer:
        if init.name == "w1":
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 2.0, "w1"))
    onnx.save(proto, str(model))


@pytest.fixture
def model(tiny_net: Path, tmp_path: Path) -> Path:
    path = tmp_path / "tiny.onnx"
    shutil.copy(tiny_net, path)
    shutil.copy(spec_path_for(tiny_net), spec_path_for(path))
    write_fp16(path)
    quantize_int8(path, CALIB, limit=4)
    return path


def test_variants_record_their_source_and_are_current(model: Path) -> None:
    variants = {v.tag: v for v in onnx_variants(model)}
    assert set(variants) == {"", "fp16", "int8"} and not any(v.stale for v in variants.values())
    assert recorded_source(variants["fp16"].path) == recorded_source(variants["int8"].path) is not None
    assert onnx_for_precision(model, "int8") == variants["int8"].path


def test_reexported_model_makes_its_variants_stale(model: Path) -> None:
    reexport(model)
    variants = {v.tag: v for v in onnx_variants(model)}
    assert variants[""].stale is None
    for tag in ("fp16", "int8"):
        reason = variants[tag].stale
        assert reason and f"tiny.{tag}.onnx was written from another tiny.onnx" in reason
        assert f"`vggedge build --model {model} --precision {tag}`" in reason
    with pytest.raises(ModelError, match="would give the old model's answers"):
        onnx_for_precision(model, "int8")
    with pytest.raises(VggEdgeError, match="tiny.fp16.onnx was written from another"):
        select_runner(model, "ort-cpu", precision="fp16")


def test_cpu_auto_skips_a_stale_variant_and_prepare_variants_rewrites_it(model: Path, monkeypatch) -> None:
    monkeypatch.setenv("VGGEDGE_TUNE", "0")
    features = cpuf.cpu_features()
    tensorrt_style = model.with_name("tiny.int8.onnx")
    assert cpuv.current_variant(model, "tensorrt") == tensorrt_style
    reexport(model)
    assert cpuv.current_variant(model, "tensorrt") is None
    chosen = cpup.auto_variant(model, features)
    assert chosen is None or chosen[1] != tensorrt_style
    written = cpuv.prepare_variants(model, CALIB, features=features)
    assert all(stale_reason(path, model) is None for path in written.values())
    assert cpuv.current_variant(model, "tensorrt") == tensorrt_style


def test_a_variant_without_a_recorded_source_is_judged_by_age(model: Path) -> None:
    fp16 = model.with_name("tiny.fp16.onnx")
    spec = spec_path_for(fp16)
    spec.write_text(spec.read_text().replace('"source_sha256"', '"legacy_field"'))
    assert recorded_source(fp16) is None and stale_reason(fp16, model) is None  # written after the model
    stat = model.stat()
    os.utime(fp16, ns=(stat.st_atime_ns, stat.st_mtime_ns - 10**9))  # now older than the model
    assert "is older than" in stale_reason(fp16, model)
