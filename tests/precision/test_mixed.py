"""Sensitivity-aware mixed precision on a tiny 4-layer net: the layers ranked first stay un-quantized."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import onnx
import pytest

from vggedge.apps.compare import load_named_views, run_model
from vggedge.precision.agreement import log_margins, measure
from vggedge.errors import ConfigError
from vggedge.precision.mixed import (LayerSensitivity, choose_layers, expected_flips, fit_scale, layer_macs, layers_needed,
                                     layer_sensitivity, margin_noise, mixed_precision, quantizable_layers,
                                     tolerable_noise)
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
                             target=1.0, max_layers=2, output_kind="probabilities", sensitivity_views=84,
                             selection="ranked")
    ranking = [s.layer for s in result.sensitivity]
    assert sorted(ranking) == sorted(TINY_LAYERS)
    noise = [s.margin_noise for s in result.sensitivity]
    assert noise == sorted(noise, reverse=True) and noise[0] > 0
    assert [s.macs for s in result.sensitivity] == [layer_macs(setup["model"])[name] for name in ranking]
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


def test_predicted_selection_keeps_the_cheapest_set_expected_to_reach_the_target(setup: dict) -> None:
    dst = setup["folder"] / "predicted" / "tiny.int8.onnx"
    dst.parent.mkdir()
    result = mixed_precision(setup["model"], CALIB, dst, setup["evaluate"], setup["reference"], setup["names"],
                             target=1.0, max_layers=2, output_kind="probabilities", sensitivity_views=84)
    assert result.tried[0] == [] and result.tried[-1] == result.kept and len(result.tried) == len(result.steps)
    margins = log_margins(setup["reference"], "probabilities")
    plain_flips = round((1 - result.steps[0][1]) * len(margins))
    scale = fit_scale(margins, sum(s.margin_noise for s in result.sensitivity), plain_flips)
    assert result.tried[1] == choose_layers(result.sensitivity, margins, 1.0, 2, scale)  # the first choice
    quantized = weight_quantized(onnx.load(str(dst)))
    assert {name for name, q in quantized.items() if not q} == set(result.kept)
    assert tensorrt_violations(onnx.load(str(dst))) == []
    with pytest.raises(ConfigError, match="selection 'best' is unknown"):
        mixed_precision(setup["model"], CALIB, dst, setup["evaluate"], setup["reference"], setup["names"],
                        target=1.0, output_kind="probabilities", selection="best")


def test_layer_macs_of_the_tiny_net(setup: dict) -> None:
    macs = layer_macs(setup["model"])
    assert list(macs) == TINY_LAYERS and all(v > 0 for v in macs.values())
    model = onnx.load(str(setup["model"]))
    inits = {t.name: list(t.dims) for t in model.graph.initializer}
    conv1 = next(n for n in model.graph.node if n.name == "conv1")
    weight = int(np.prod(inits[conv1.input[1]]))
    assert macs["conv1"] % weight == 0 and macs["conv1"] // weight >= 1  # weights x output positions


def test_margin_noise_is_the_mean_squared_change_of_the_top_gap() -> None:
    ref = np.array([[3.0, 1.0, 0.0], [0.0, 2.0, 1.5]])
    out = np.array([[2.5, 1.2, 0.0], [0.0, 2.0, 1.5]])  # gap 2 -> 1.3; unchanged
    assert margin_noise(ref, out, "logits") == pytest.approx((0.7 ** 2 + 0) / 2)
    probs = np.exp(ref) / np.exp(ref).sum(axis=1, keepdims=True)
    probs_out = np.exp(out) / np.exp(out).sum(axis=1, keepdims=True)
    assert margin_noise(probs, probs_out, "probabilities") == pytest.approx(0.245)  # the same gaps
    assert list(log_margins(ref, "logits")) == [2.0, 0.5]


def test_expected_flips_and_the_fitted_scale() -> None:
    margins = np.linspace(0.01, 3.0, 500)
    assert expected_flips(margins, 0.0) == 0.0
    assert expected_flips(np.zeros(10), 1.0) == pytest.approx(5.0)  # a tie flips half the time
    assert expected_flips(margins, 0.1) < expected_flips(margins, 0.2)
    observed = expected_flips(margins, 0.05 * 3.0)
    assert fit_scale(margins, 0.05, round(observed)) == pytest.approx(3.0, rel=0.1)
    allowed = tolerable_noise(margins, 0.99)
    assert expected_flips(margins, allowed) == pytest.approx(5.0, rel=1e-3)  # 1% of 500 views


def test_choose_layers_takes_the_cheapest_set_that_is_expected_to_suffice() -> None:
    margins = np.linspace(0.05, 3.0, 500)
    allowed = tolerable_noise(margins, 0.99)
    big = LayerSensitivity("big", 0.0, 1.0, margin_noise=allowed * 3, macs=1000)
    cheap = LayerSensitivity("cheap", 0.0, 1.0, margin_noise=allowed * 0.6, macs=10)
    small = LayerSensitivity("small", 0.0, 1.0, margin_noise=allowed * 0.5, macs=20)
    rest = LayerSensitivity("rest", 0.0, 1.0, margin_noise=allowed * 0.5, macs=5000)
    ranking = [big, cheap, small, rest]
    # 4.6 allowed-units of noise, 1 may stay: removing big (3) + cheap (0.6) suffices and costs least
    assert choose_layers(ranking, margins, 0.99, 4) == ["big", "cheap"]
    assert choose_layers(ranking, margins, 0.99, 1) == ["big"]  # nothing within 1 layer suffices: most noise
    assert choose_layers(ranking, margins, 0.5, 4) == []  # plain already expected to reach 50%
    # an expensive noisy layer loses to two cheap ones that remove enough together
    ranking = [LayerSensitivity("conv", 0.0, 1.0, allowed * 0.9, 1000),
               LayerSensitivity("a", 0.0, 1.0, allowed * 0.5, 10), LayerSensitivity("b", 0.0, 1.0, allowed * 0.5, 10)]
    assert choose_layers(ranking, margins, 0.99, 3) == ["a", "b"]


def test_layers_needed_counts_the_noisiest_layers_first() -> None:
    margins = np.linspace(0.05, 3.0, 500)
    allowed = tolerable_noise(margins, 0.99)
    ranking = [LayerSensitivity(name, 0.0, 1.0, allowed * n, 1) for name, n in (("a", 0.4), ("b", 2.0), ("c", 0.9))]
    assert layers_needed(ranking, margins, 0.99) == 2  # 3.3 units of noise, 1 tolerable: b (2.0) and c (0.9)
    assert layers_needed(ranking, margins, 0.5) == 0
    assert layers_needed(ranking, margins, 1.0) == 3  # no flip at all: every layer
