"""Sensitivity-aware mixed precision on a tiny 4-layer net: the layers ranked first stay un-quantized."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import onnx
import pytest

from vggedge.apps.compare import load_named_views, run_model
from vggedge.precision.agreement import measure
from vggedge.precision.mixed import layer_sensitivity, mixed_precision, quantizable_layers
from vggedge.precision.qdq_check import tensorrt_violations
from vggedge.preprocess import list_images
from vggedge.spec import load_spec_for

TINY_LAYERS = ["conv1", "conv2", "conv3", "fc"]
REPO = Path(__file__).resolve().parents[2]
CALIB, EVAL = REPO / "calib", REPO / "eval"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, tiny_net: Path) -> Iterator[dict]:
    folder = tmp_path_factory.mktemp("mixed")
    model = tiny_net
    names, views, _ = load_named_views(list_images(EVAL), augment=True)

    def evaluate(path: Path, subset: Sequence[int] | None) -> np.ndarray:
        chosen = views if subset is None else [views[i] for i in subset]
        return run_model(path, chosen, "ort-cpu", 16)[0]

    yield {"model": model, "names": names, "evaluate": evaluate, "reference": evaluate(model, None),
           "folder": folder}
    shutil.rmtree(folder, ignore_errors=True)


def weight_quantized(model: onnx.ModelProto) -> dict[str, bool]:
    """Layer name -> whether its weight input comes out of a DequantizeLinear."""
    producers = {o: n for n in model.graph.node for o in n.output}
    return {n.name: producers.get(n.input[1]) is not None and producers[n.input[1]].op_type == "DequantizeLinear"
            for n in model.graph.node if n.op_type in ("Conv", "Gemm")}


def test_quantizable_layers(setup: dict) -> None:
    layers, touched = quantizable_layers(setup["model"])
    assert layers == TINY_LAYERS and touched == ["conv1", "conv2", "pool", "conv3", "fc"]


def test_mixed_precision_keeps_the_layers_ranked_first(setup: dict) -> None:
    dst = setup["folder"] / "out" / "tiny.int8.onnx"
    dst.parent.mkdir()
    result = mixed_precision(setup["model"], CALIB, dst, setup["evaluate"], setup["reference"], setup["names"],
                             target=1.0, max_layers=2, output_kind="probabilities", sensitivity_views=84)
    ranking = [s.layer for s in result.sensitivity]
    assert sorted(ranking) == sorted(TINY_LAYERS)
    kls = [s.kl_mean for s in result.sensitivity]
    assert kls == sorted(kls, reverse=True) and kls[0] > 0
    assert 1 <= len(result.kept) <= 2 and result.kept == ranking[:len(result.kept)]
    assert result.met or len(result.kept) == 2  # stopped at the target or at the budget
    assert [s[0] for s in result.steps] == list(range(len(result.kept) + 1))
    model = onnx.load(str(dst))
    assert tensorrt_violations(model) == []
    quantized = weight_quantized(model)
    assert {name for name, q in quantized.items() if not q} == set(result.kept)
    assert load_spec_for(dst).extra["calibration"]["excluded"] == sorted(result.kept)
    out = setup["evaluate"](dst, None)  # the artefact written is the one measured
    assert measure(setup["reference"], out, setup["names"]).agree == result.agreement.agree
    assert result.agreement.top1 >= result.steps[0][1]  # no worse than plain INT8 here


def test_sensitivity_measures_one_layer_at_a_time(setup: dict, tmp_path: Path) -> None:
    """Each candidate quantizes exactly one layer; the ranking is reproducible."""
    seen = []

    def spy(path: Path, subset):
        seen.append({n: q for n, q in weight_quantized(onnx.load(str(path))).items() if q})
        return setup["evaluate"](path, subset)

    subset = list(range(0, len(setup["names"]), 12))
    ranking = layer_sensitivity(setup["model"], CALIB, tmp_path, spy, setup["reference"][subset], subset,
                                output_kind="probabilities", cache_dir=tmp_path / "cache")
    assert [list(s) for s in seen] == [[layer] for layer in TINY_LAYERS]
    again = layer_sensitivity(setup["model"], CALIB, tmp_path, setup["evaluate"], setup["reference"][subset], subset,
                              output_kind="probabilities", cache_dir=tmp_path / "cache")
    assert [s.layer for s in again] == [s.layer for s in ranking]
    assert list(tmp_path.glob("only-*.onnx")) == []  # candidates are removed
