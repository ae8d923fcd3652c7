"""GpuPreprocessor's buffers over the fake pycuda of ``gpu_fakes`` (the kernel itself is checked on a GPU)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from gpu_fakes import FakeDriver

from vggedge.runtime.gpu import cuda as vcuda
from vggedge.runtime.gpu.gpu_preprocess import GpuPreprocessor
from vggedge.spec import ModelSpec


def test_each_stream_stages_frames_in_its_own_buffer_and_free_synchronises(fake_cuda: FakeDriver) -> None:
    pre = GpuPreprocessor(ModelSpec(), ctx=vcuda.CudaContext(0).open())
    launches: list[tuple[int, int]] = []
    pre._kernel = SimpleNamespace(prepared_async_call=lambda grid, block, stream, src, *rest:
                                  launches.append((stream.handle, src)))
    frame = np.zeros((8, 8, 3), np.uint8)
    a, b = vcuda.CudaStream(), vcuda.CudaStream()
    pre(frame, 0x1000, a)
    pre(frame, 0x1000, b)
    pre(frame, 0x1000, a)
    assert launches[0][1] != launches[1][1]  # another stream's copy cannot overwrite a frame still being read
    assert launches[0][1] == launches[2][1]  # one stream reuses its own buffer (stream order protects it)
    pre(np.zeros((16, 16, 3), np.uint8), 0x1000, a)  # growing a's buffer leaves b's alone
    assert fake_cuda.freed == [launches[0][1]]
    fake_cuda.log.clear()
    pre.free()
    assert fake_cuda.log == ["synchronize", "free", "free"]  # with the context pushed (the fake checks)
    assert fake_cuda.contexts_pushed == 0
    pre.free()  # safe twice
