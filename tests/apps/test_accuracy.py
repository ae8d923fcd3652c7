"""Acceptance: FP16 and INT8 VGG16 (224x224, data-normalised weights) agree with FP32 on 504 views of eval/ photos.

Full-size VGG16 on onnxruntime's CPU provider: about a minute or more on 2 cores. Each bound is asserted
for what actually runs on the machine the test runs on, and the output names its ISA (issue 22): on x86
without VNNI (Zen 3) the TensorRT-style file runs unfused (runtime/cpu/saturation.py), elsewhere on
onnxruntime's fused kernels; ``precision="auto"`` runs whichever CPU variant it picks there.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from vggedge.apps.build import precision_artefacts
from vggedge.apps.compare import compare_models, format_report, load_views, run_model
from vggedge.model.export import export_vgg16
from vggedge.model.vgg16 import VGG16Options
from vggedge.preprocess import list_images
from vggedge.machine import cpu_name
from vggedge.runtime.cpu.features import cpu_features

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
CALIB = REPO / "calib"
EVAL = REPO / "eval"
OPTS = VGG16Options(include_rescaling=False, include_top=True, num_classes=1000, classifier_activation=None)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("accuracy")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)  # ~1 GB of models


@pytest.fixture(scope="module")
def models(workdir: Path) -> dict[str, Path]:
    start = time.perf_counter()  # export normalises the random weights on the photos: one forward pass
    fp32 = export_vgg16("normalised:0", workdir / "vgg16.onnx", OPTS).onnx_path
    built = precision_artefacts(fp32, ("fp32", "fp16", "int8"), calib=CALIB, method="minmax")
    print(f"\nexport + fp16 + int8 (minmax) took {time.perf_counter() - start:.0f} s")
    return built.onnx


@pytest.fixture(scope="module")
def eval_set():
    """The 504 augmented views of eval/ (disjoint from the calibration photos)."""
    from vggedge.apps.accuracy import evaluation_set

    return evaluation_set(EVAL, calibration=[CALIB])


@pytest.fixture(scope="module")
def reference(models: dict[str, Path], eval_set) -> np.ndarray:
    """FP32 outputs on every evaluation view, computed once for the tests that measure against them."""
    from vggedge.apps.accuracy import evaluate

    return evaluate(models["fp32"], eval_set)


@pytest.mark.parametrize("folder", [CALIB, EVAL], ids=["calib", "eval"])
def test_fp32_model_is_structured(models: dict[str, Path], folder: Path) -> None:
    photos = list_images(folder)
    scores, _ = run_model(models["fp32"], load_views(photos, augment=False)[0], "ort-cpu", batch_size=4)
    assert scores.shape == (len(photos), 1000)
    classes = set(scores.argmax(axis=1).tolist())
    assert len(classes) >= 6, f"FP32 predicts only {len(classes)} distinct classes on {len(photos)} photos"
    ranked = np.sort(scores, axis=1)
    assert np.isfinite(scores).all() and np.median(ranked[:, -1] - ranked[:, -2]) > 0.5  # clear winners


def test_fp16_int8_agree_with_fp32(models: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    start = time.perf_counter()
    report = compare_models(models, EVAL, augment=True, backend="ort-cpu")  # photos calibration never saw
    with capsys.disabled():  # CI logs show the numbers whether the test passes or fails
        print(f"\n{cpu_name()}: {cpu_features().isa}\n{format_report(report)}\n"
              f"(compare took {time.perf_counter() - start:.0f} s)")
    assert report.images == 84 * len(list_images(EVAL)) == 504 and report.overlap == []
    assert report.output_kind == "logits"
    stats = {v.name: v for v in report.variants}
    # what ran is what the report says ran: unfused exactly where the CPU's U8S8 kernels would saturate
    assert ("unfused" in stats["int8"].evaluation) == cpu_features().u8s8_saturates, stats["int8"].evaluation
    # FP16: the bound. Plain INT8 (minmax) measured 97.8% (95% 96.1-98.8%, 11 flips); this guards
    # that level with room for onnxruntime versions. (With the stand-in fitted on calib/ only, eval/ photos
    # were outside its domain, answered by near-ties, and the same INT8 agreed 81.9%.)
    bounds = {"fp16": 0.99, "int8": 0.95}
    below = {name: stats[name].top1_agreement for name, bound in bounds.items() if stats[name].top1_agreement < bound}
    assert not below, f"top-1 agreement below {bounds}: {below}\n{format_report(report)}"


def test_build_report_predicts_the_engine_on_any_isa(models: dict[str, Path], eval_set, reference: np.ndarray,
                                                     capsys: pytest.CaptureFixture) -> None:
    """`build`'s INT8 figure (unfused Q/DQ in float) is ISA-independent; where the fused kernels cannot saturate
    (VNNI, Arm dot-product) they agree with it within a point, so a Zen 3 is told what a VNNI machine is told."""
    from vggedge.apps.accuracy import evaluate
    from vggedge.precision.agreement import measure

    unfused = measure(reference, evaluate(models["int8"], eval_set), eval_set.names, output_kind="logits")
    line = f"unfused Q/DQ: {100 * unfused.top1:.1f}% (95% {100 * unfused.low:.1f}-{100 * unfused.high:.1f}%)"
    assert unfused.top1 >= 0.95, line
    if not cpu_features().u8s8_saturates:
        kernels = measure(reference, run_model(models["int8"], eval_set.views, "ort-cpu", 8)[0], eval_set.names,
                          output_kind="logits")
        line += f"; fused kernels: {100 * kernels.top1:.1f}% ({len(kernels.flips)} flips)"
        assert abs(kernels.top1 - unfused.top1) <= 0.01, line
    with capsys.disabled():
        print(f"\n{cpu_name()}: {cpu_features().isa}\n{line}")


def test_what_auto_runs_agrees_with_fp32(models: dict[str, Path], eval_set, reference: np.ndarray,
                                         capsys: pytest.CaptureFixture) -> None:
    """The INT8 variant `precision="auto"` runs on this CPU (reduce-range on a Zen 3, OpenVINO where it wins...)."""
    from vggedge.apps.batches import gather, run_images
    from vggedge.precision.agreement import measure
    from vggedge.runtime.base import RunnerOptions
    from vggedge.runtime.select import select_runner
    from vggedge.runtime.cpu.variants import prepare_variants
    from vggedge.spec import load_spec_for

    prepare_variants(models["fp32"], CALIB)
    spec = load_spec_for(models["fp32"])
    with select_runner(models["fp32"], "ort-cpu", options=RunnerOptions(max_batch=8), precision="auto").runner as runner:
        out, _ = gather(run_images(runner, spec, eval_set.views, 8, strict=True, copy=False), spec.output_name,
                        len(eval_set.views))
        ran = runner.describe()
    stats = measure(reference, out.reshape(len(eval_set.views), -1), eval_set.names, output_kind="logits")
    line = (f"auto ran {ran}: top-1 agreement {100 * stats.top1:.1f}% (95% {100 * stats.low:.1f}-"
            f"{100 * stats.high:.1f}%), {len(stats.flips)} flips")
    with capsys.disabled():
        print(f"\n{cpu_name()}: {cpu_features().isa}\n{line}")
    assert stats.top1 >= 0.95, line
