"""The GPU backends: everything that needs pycuda (and TensorRT or onnxruntime-gpu) lives here.

- ``cuda.py``: explicitly owned CUDA resources (primary context, pinned/device buffers, streams, events);
- ``pipeline.py``: the slots (buffers + stream + events per batch in flight) and their pure scheduler;
- ``runner.py``: :class:`PipelineRunner`, the runner contract on top of the slots;
- ``trt.py`` / ``ort_cuda.py``: the TensorRT and onnxruntime CUDA runners;
- ``gpu_preprocess.py``: the CUDA preprocessing kernel, loaded from its fatbin.

Importing this package (or any module in it) imports no GPU package: pycuda,
TensorRT and onnxruntime-gpu are imported inside the functions that use them.
"""
