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

OpenVINO comes as the package itself (``pip install 'vggedge[openvino]'``,
openvino_native.py: any vendor, variants ``ov-native-int8``/``-bf16``/``-fp32``),
as onnxruntime's plugin EP (openvino_ep.py: Intel only) or, as before, as the full
``onnxruntime-openvino`` build.

On x86 without VNNI (e.g. AMD Zen 3) onnxruntime's U8S8 kernels can saturate:
there ``auto`` runs the reduce-range file, the TensorRT-style variants are not
offered, and a Q/DQ file asked for by name runs unfused, with a one-line note
(saturation.py). `build`'s accuracy report always evaluates Q/DQ unfused.

With ``precision="auto"`` the variant is, in order: the user's override
(``variant=`` or ``VGGEDGE_CPU_VARIANT``); the winner measured once per machine
and model by tune.py (unless ``VGGEDGE_TUNE=0``); else the
feature-detection order of :func:`variants_for`.

Modules: ``features`` (what the CPU can do), ``variants`` (the configurations and
their files), ``tune`` (measuring them per batch size and call size), ``planner``
(which one runs, and its runner class and session settings, before any runner
exists; inside the backend the only importer of ``tune``), ``saturation`` (INT8
where U8S8 kernels saturate), ``openvino_native`` (OpenVINO itself) and
``openvino_ep`` (the OpenVINO plugin EP). Applications reach this folder only
through runtime/select.py and runtime/cpu_path.py.
"""
