"""vggedge/catalogue.py: naming of a model's derived files (parse and build), staleness, the one model hash."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from vggedge import catalogue
from vggedge.catalogue import (VARIANT_TAGS, base_model, current_variant_file, file_sha256, onnx_for_precision,
                               onnx_variants, variant_file, variant_tag)
from vggedge.errors import ConfigError, ModelError


def test_base_model_strips_variant_tags() -> None:
    for name in ("m.onnx", "m.fp16.onnx", "m.int8.onnx", "m.int8-cpu.onnx", "m.int8-cpu-rr.onnx"):
        assert base_model(Path("d") / name) == Path("d/m.onnx")
    assert base_model("d/m.v2.onnx") == Path("d/m.v2.onnx")


def test_variants_and_precision_files(model_copy: Path, variant_writer) -> None:
    fp16 = variant_writer(model_copy, "fp16", "fp16")
    assert [(v.tag, v.precision) for v in onnx_variants(model_copy)] == [("", "fp32"), ("fp16", "fp16")]
    assert onnx_variants(fp16) == onnx_variants(model_copy)  # the same family from any member
    assert onnx_for_precision(model_copy, "fp16") == fp16
    assert onnx_for_precision(fp16, "fp32") == model_copy
    assert onnx_for_precision(model_copy, "as-given") == model_copy
    with pytest.raises(ModelError, match=r"m\.int8\.onnx: no int8 variant of .*m\.onnx \(write it with "
                                         r"`vggedge build --model .*m\.onnx --precision int8`\)"):
        onnx_for_precision(model_copy, "int8")
    with pytest.raises(ConfigError, match=r"precision 'fp8' is unknown; choose one of"):
        onnx_for_precision(model_copy, "fp8")


def test_naming_parses_what_it_builds() -> None:
    for tag in ("",) + VARIANT_TAGS:
        path = variant_file("d/m.onnx", tag)
        assert variant_tag(path) == tag and base_model(path) == Path("d/m.onnx")
        assert variant_file(path, "fp16") == Path("d/m.fp16.onnx")  # from any member of the family
    assert variant_file("d/m.onnx", "int8-cpu-rr").name == "m.int8-cpu-rr.onnx"
    with pytest.raises(ConfigError, match=r"ONNX variant 'int4' is unknown; expected one of \['fp16', 'int8'"):
        variant_file("d/m.onnx", "int4")


def test_a_variant_of_another_model_is_not_current(model_copy: Path, variant_writer) -> None:
    int8 = variant_writer(model_copy, "int8", "int8")  # a stand-in recording no source: judged by age
    os.utime(int8, ns=(model_copy.stat().st_mtime_ns - 10**9,) * 2)
    assert current_variant_file(model_copy, "int8") is None
    assert "is older than" in catalogue.stale_reason(int8)
    os.utime(int8, ns=(model_copy.stat().st_mtime_ns + 10**9,) * 2)
    assert current_variant_file(model_copy, "int8") == int8
    assert current_variant_file(model_copy, "fp16") is None  # not written


def test_one_memoised_hash_follows_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(b"first")
    calls = []
    real = catalogue._sha256.__wrapped__
    catalogue._sha256.cache_clear()
    monkeypatch.setattr(catalogue, "_sha256", catalogue.functools.lru_cache(maxsize=8)(
        lambda *key: calls.append(key) or real(*key)))
    first = file_sha256(path)
    assert file_sha256(str(path)) == first and len(calls) == 1  # hashed once while unchanged
    path.write_bytes(b"second, longer")
    assert file_sha256(path) != first and len(calls) == 2
    assert first == "a7937b64b8caa58f03721bb6bacf5c78cb235febe0e70b1b84cd99541461a08e"  # sha256(b"first")
