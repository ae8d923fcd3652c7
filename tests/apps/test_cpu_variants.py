"""`vggedge compare --cpu-variants`: every runnable CPU variant's agreement with the FP32 run."""
from __future__ import annotations

import json

import pytest
from small_models import link_model

from vggedge.apps.compare.cpu_variants import variant_accuracy
from vggedge.cli import main
from vggedge.runtime.cpu import features as cpuf, variants as cpuv

ZEN4 = cpuf.parse_cpuinfo("flags\t\t: avx2 avx512f avx512_bf16 avx512_vnni\n", "x86_64", 2, ("CPUExecutionProvider",))


@pytest.fixture(scope="module")
def small(tmp_path_factory, vgg32):
    fp32 = link_model(vgg32("random:2", 10), tmp_path_factory.mktemp("acc"), "vgg16.onnx")
    cpuv.prepare_variants(fp32, "calib", features=ZEN4)
    return fp32


def test_each_variant_against_fp32(small):
    report = variant_accuracy(small, "calib", batch_size=4, features=ZEN4)
    assert report.images == 12 and report.reference == "vgg16.onnx (fp32 variant)"
    assert [v.name for v in report.variants] == ["int8", "int8-trt"]
    for v in report.variants:
        assert v.backend == "ort-cpu" and 0.0 <= v.top1_agreement <= 1.0
        assert 0.5 < v.cosine_mean <= 1.0 + 1e-6 and v.max_abs_diff > 0  # INT8 really differs from FP32


def test_cli(small, capsys):
    assert main(["compare", str(small), "--cpu-variants", "--batch-size", "4", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {v["name"] for v in data["variants"]} >= {"int8-trt"}
    assert main(["compare", str(small), str(small), "--cpu-variants"]) == 1
    assert "--cpu-variants takes one FP32 model; got 2" in capsys.readouterr().err
