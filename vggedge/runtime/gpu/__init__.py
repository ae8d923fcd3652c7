"""The GPU backends: everything that needs pycuda (and TensorRT or onnxruntime-gpu) lives here.

- ``cuda.py``: explicitly owned CUDA resources (primary context, pinned/device buffers, streams, events);
- ``pipeline.py``: the slots (buffers + stream + events per batch in flight) and their pure scheduler;
- ``runner.py``: :class:`PipelineRunner`, the runner contract on top of the slots;
- ``trt.py`` / ``ort_cuda.py``: the TensorRT and onnxruntime CUDA runners (``ort_cuda_options.py``:
  the typed CUDA provider options: NHWC, CUDA graphs, quiet logs);
- ``gpu_preprocess.py``: the CUDA preprocessing kernel, loaded from its fatbin;
- ``decode.py``: JPEG decoding on the GPU (nvImageCodec) with per-file CPU fallback, and the one
  choice between it and the CPU decode pool (:func:`~vggedge.runtime.gpu.decode.select_decoder`);
- ``device_prepare.py``: fill functions for ``run_on_device`` (files decoded on the GPU, stream
  frames uploaded once), writing straight into the runner's device input buffer.

Importing this package (or any module in it) imports no GPU package: pycuda,
TensorRT, onnxruntime-gpu and nvImageCodec are imported inside the functions that use them.
"""
