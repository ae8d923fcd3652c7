"""Planner hooks of the GPU backends: which engine TensorRT runs, which ONNX variant onnxruntime CUDA runs.

Pure file lookups (engine/registry.py): nothing here imports a GPU package.
"""
from __future__ import annotations

from pathlib import Path

from ...catalogue import onnx_for_precision, onnx_variants
from ...engine.registry import find_engine
from ..plan import Choice, PlanRequest


def plan_engine(request: PlanRequest) -> Choice | str:
    """The TensorRT engine built for the model (or its variant at the precision asked) that fits this machine."""
    model = request.model
    if request.engine is not None:
        return Choice(Path(request.engine), f"{Path(request.engine).name}: the TensorRT engine given",
                      {"model_path": str(model)})
    if request.engine_reason is not None:
        return request.engine_reason
    options = request.options
    choice = find_engine(model, precision=request.precision, max_batch=options.max_batch, device=options.device)
    if choice.plan is None:
        return choice.reason or f"no TensorRT engine for {model}"
    identity = choice.identity
    source = identity.model_path or str(model)
    why = (f"{choice.plan.name}: TensorRT {identity.precision} engine built from {Path(source).name} "
           f"for this GPU and TensorRT (precision {request.precision})")
    return Choice(choice.plan, why, {"model_path": source}, identity.spec)


def plan_onnx_gpu(request: PlanRequest) -> Choice | str:
    """onnxruntime CUDA: the FP16 variant for ``precision="auto"`` when it was built, else the file asked for."""
    model = request.model
    if request.precision == "auto":
        fp16 = [v.path for v in onnx_variants(model) if v.tag == "fp16" and not v.stale]
        if fp16:
            return Choice(fp16[0], f"{fp16[0].name}: FP16 variant (precision auto on the GPU)")
        return Choice(model, f"{model.name}: the model given (precision auto; no FP16 variant built)")
    path = onnx_for_precision(model, request.precision)
    what = "the model given" if path == model else f"its {request.precision} variant"
    return Choice(path, f"{path.name}: {what} (precision {request.precision})")
