"""INT8 weight storage: the default Q/DQ file keeps int8 weight initializers (-> DequantizeLinear), is
under 30% of the FP32 file, passes the TensorRT Q/DQ check, and gives the same outputs as the FP32-weight
form (FP32 weights -> QuantizeLinear -> DequantizeLinear) that TensorRT 8.x needs."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterator

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto

from vggedge.engine.flags import int8_weight_style
from vggedge.model.export import export_vgg16
from vggedge.model.vgg16 import VGG16Options
from vggedge.precision.int8 import STYLES, TENSORRT, TENSORRT_FP32_WEIGHTS, quantize_int8
from vggedge.precision.qdq_check import tensorrt_violations
from vggedge.preprocess import list_images, preprocess
from vggedge.spec import load_spec_for

CALIB = Path(__file__).resolve().parents[2] / "calib"
# 64x64 keeps fc1 (2048 x 4096) large enough that weights dominate the file, as in the full model
OPTS = VGG16Options(include_rescaling=False, include_top=True, num_classes=16, input_shape=(64, 64, 3))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, Path]]:
    folder = tmp_path_factory.mktemp("int8_storage")
    fp32 = export_vgg16("normalised:0", folder / "m.onnx", OPTS).onnx_path
    small = quantize_int8(fp32, CALIB, limit=3).path
    large = quantize_int8(fp32, CALIB, limit=3, style=TENSORRT_FP32_WEIGHTS)
    assert large.cache_hit  # the same calibration ranges: only the weight storage differs
    yield fp32, small, large.path
    shutil.rmtree(folder, ignore_errors=True)


def _weight_sources(model: onnx.ModelProto) -> dict[str, onnx.TensorProto | None]:
    """Conv/Gemm name -> the initializer its weight's DequantizeLinear reads directly (None: through a Q)."""
    inits = {t.name: t for t in model.graph.initializer}
    producers = {out: n for n in model.graph.node for out in n.output}
    found = {}
    for layer in (n for n in model.graph.node if n.op_type in ("Conv", "Gemm")):
        dq = producers[layer.input[1]]
        assert dq.op_type == "DequantizeLinear"
        found[layer.name] = inits.get(dq.input[0])
    return found


def test_default_stores_int8_weights(files) -> None:
    fp32, small, large = files
    sources = _weight_sources(onnx.load(small))
    assert len(sources) == 16
    assert all(t is not None and t.data_type == TensorProto.INT8 for t in sources.values())
    assert all(t is None for t in _weight_sources(onnx.load(large)).values())  # FP32 -> Q -> DQ
    assert small.stat().st_size < 0.30 * fp32.stat().st_size
    assert large.stat().st_size > 0.95 * fp32.stat().st_size
    assert small.name == "m.int8.onnx" and large.name == "m.int8-tensorrt-fp32w.onnx"


def test_both_forms_pass_the_qdq_check_and_agree(files) -> None:
    _, small, large = files
    assert tensorrt_violations(onnx.load(small)) == []
    assert tensorrt_violations(onnx.load(large)) == []
    spec = load_spec_for(small)
    batch = preprocess(list_images(CALIB)[:6], spec)
    outputs = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"images": batch})[0]
               for p in (small, large)]
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-5, atol=1e-6)


def test_styles_and_flags_say_which_form() -> None:
    assert STYLES["tensorrt"] is TENSORRT and TENSORRT.int8_weights
    assert STYLES["tensorrt-fp32w"] is TENSORRT_FP32_WEIGHTS and not TENSORRT_FP32_WEIGHTS.int8_weights
    assert TENSORRT.extra_options("minmax", 99.9)["AddQDQPairToWeight"] is False
    assert [int8_weight_style(v) for v in ("8.5.2", "8.6.1", "10.3.0", "11.0")] == [
        "tensorrt-fp32w", "tensorrt-fp32w", "tensorrt", "tensorrt"]
