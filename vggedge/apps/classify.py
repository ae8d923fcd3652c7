"""Classifier: preprocess -> infer -> top-k, on whichever backend selection gives."""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..errors import ModelError, VggEdgeError
from ..model.labels import Prediction, labels_for, top_k
from ..preprocess import ImageLike, preprocess
from ..runtime.base import RunnerOptions
from ..runtime.select import select_runner
from ..spec import ModelSpec, load_spec_for

log = logging.getLogger(__name__)


def batch_plan(spec: ModelSpec, batch_size: int) -> tuple[int, bool]:
    """(batch size, pad) for a model: a fixed-batch model takes exactly its batch, padded at the end."""
    return (spec.fixed_batch, True) if spec.fixed_batch else (batch_size, False)


def chunks(images: Sequence[ImageLike], size: int, pad: bool) -> Iterator[tuple[list[ImageLike], int]]:
    """(batch, number of real images) pairs; with ``pad`` the last batch repeats its last image."""
    for start in range(0, len(images), size):
        chunk = list(images[start:start + size])
        real = len(chunk)
        if pad and real < size:
            chunk += [chunk[-1]] * (size - real)
        yield chunk, real


def infer_images(runner, spec: ModelSpec, images: Sequence[ImageLike], batch_size: int) -> np.ndarray:
    """Preprocess and run images in batches on an active runner; returns (N, ...) float32 outputs."""
    outputs = []
    for chunk, real in chunks(images, *batch_plan(spec, batch_size)):
        out = runner.infer({spec.input_name: preprocess(chunk, spec)})[spec.output_name]
        outputs.append(np.array(out[:real], dtype=np.float32, copy=True))
    return np.concatenate(outputs)


@dataclass
class Timings:
    """Wall-clock seconds per stage, one entry per batch."""

    preprocess: list[float] = field(default_factory=list)
    infer: list[float] = field(default_factory=list)
    images: list[int] = field(default_factory=list)


class Classifier:
    """Classify images with a VGG16-family model and its spec sidecar.

    >>> with Classifier("engines/demo/vgg16.onnx") as clf:   # doctest: +SKIP
    ...     clf.classify(["calib/cat_chelsea.jpg"], k=5)

    One Classifier owns one runner; use one per thread. ``precision="auto"`` lets
    the CPU backend run the fastest INT8/FP32 variant beside the model (runtime/cpu.py).
    """

    def __init__(self, model: str | Path, backend: str = "auto", *, batch_size: int = 8,
                 spec: ModelSpec | None = None, options: RunnerOptions | None = None,
                 precision: str = "as-given") -> None:
        self.model = Path(model)
        self.spec = spec or load_spec_for(self.model)
        if self.spec.output_kind == "features":
            raise ModelError(f"{model}: this model outputs features ({self.spec.output_name}), not class scores; "
                             "export it with include_top=True to classify")
        self.labels = labels_for(self.spec.labels, self.spec.num_classes)
        self.batch_size, self._pad = batch_plan(self.spec, batch_size)
        options = dataclasses.replace(options or RunnerOptions(), max_batch=self.batch_size)
        self.selection = select_runner(self.model, backend, options=options, precision=precision)
        self.runner = self.selection.runner
        self.timings = Timings()
        self._owner: int | None = None

    def __enter__(self) -> "Classifier":
        self.runner.activate()
        self._owner = threading.get_ident()
        return self

    def __exit__(self, *exc: object) -> None:
        self.runner.deactivate()

    def scores(self, batch: np.ndarray) -> np.ndarray:
        """Raw model output for an already preprocessed batch."""
        if not self.runner.active:
            raise VggEdgeError(f"{self.model}: Classifier used outside `with Classifier(...) as clf:`; "
                               "the with-block allocates the backend's session and buffers once")
        if threading.get_ident() != self._owner:
            raise VggEdgeError(f"{self.model}: this Classifier belongs to the thread that opened it; a GPU "
                               "execution context and stream are not shared: open one Classifier per thread")
        out = self.runner.infer({self.spec.input_name: batch})
        return np.array(out[self.spec.output_name], dtype=np.float32, copy=True)

    def classify(self, images: Sequence[ImageLike], k: int = 5) -> list[list[Prediction]]:
        """Top-k predictions per image (paths or BGR arrays), processed in batches."""
        results: list[list[Prediction]] = []
        for chunk, real in chunks(images, self.batch_size, self._pad):
            t0 = time.perf_counter()
            batch = preprocess(chunk, self.spec)
            t1 = time.perf_counter()
            scores = self.scores(batch)[:real]
            t2 = time.perf_counter()
            self.timings.preprocess.append(t1 - t0)
            self.timings.infer.append(t2 - t1)
            self.timings.images.append(real)
            results.extend(top_k(scores, self.labels, k))
        return results
