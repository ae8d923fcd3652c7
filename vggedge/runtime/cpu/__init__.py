"""The onnxruntime CPU backend (one folder, like runtime/gpu/): the CPU configurations ("variants") this
machine can run, and the ``ort-cpu`` planner hook that picks one (the runner is runtime/ort.py's OrtRunner).

Which file serves which runtime:
- ``<stem>.int8.onnx`` (TensorRT-style Q/DQ: symmetric int8) runs on TensorRT, on
  onnxruntime's OpenVINO execution provider and on the plain CPU provider;
- ``<stem>.int8-cpu.onnx`` (uint8 asymmetric activations, int8 per-channel weights)
  is the plain CPU provider's faster INT8 file; ``int8-cpu-rr`` adds reduce_range
  for x86 CPUs without VNNI, whose u8*s8 instructions can saturate;
- ``<stem>.onnx`` (FP32) is the fallback everywhere, and the ``ov-bf16`` variant's
  file (OpenVINO runs it in bfloat16 on CPUs with bf16 instructions).

Everything runs inside onnxruntime. OpenVINO comes either as the plugin EP
(``pip install 'vggedge[openvino]'``, see openvino_ep.py) or, as before,
as the full ``onnxruntime-openvino`` build.

With ``precision="auto"`` the variant is, in order: the user's override
(``variant=`` or ``VGGEDGE_CPU_VARIANT``); the winner measured once per machine
and model by tune.py (unless ``VGGEDGE_TUNE=0``); else the
feature-detection order of :func:`variants_for`.

Modules: ``features`` (what the CPU can do), ``variants`` (the configurations and
their files), ``tune`` (measuring them), ``planner`` (which one runs: inside the backend the only
importer of ``tune``: the file that runs and its session settings, before any
runner exists) and ``openvino_ep`` (the OpenVINO plugin EP). Applications reach
this folder only through runtime/select.py and runtime/cpu_path.py.
"""
