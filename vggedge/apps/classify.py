"""Classifier: preprocess -> infer -> top-k, on whichever backend selection gives, through ``Runner.run()``."""
from __future__ import annotations

import dataclasses
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence

import numpy as np

from ..checks import count
from ..errors import ImageError, ModelError, VggEdgeError
from ..model.labels import Prediction, labels_for, top_k
from ..preprocess import ImageLike
from ..runtime.base import RunnerOptions
from ..runtime.device_path import select_decoder
from ..runtime.select import Selection, select_runner
from ..spec import ModelSpec
from .batches import ImagePrepareFn, iter_batches, split

log = logging.getLogger(__name__)


@dataclass
class Timings:
    """Seconds per stage, one entry per batch (``preprocess`` runs in the prepare worker, overlapped)."""

    preprocess: list[float] = field(default_factory=list)
    infer: list[float] = field(default_factory=list)
    images: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Classified:
    """One image's outcome, in input order: its top-k predictions, or the error that stopped it."""

    index: int
    source: ImageLike
    predictions: Optional[list[Prediction]] = None
    error: Optional[ImageError] = None

    @property
    def ok(self) -> bool:
        return self.error is None


class Classifier:
    """Classify images with a VGG16-family model (ONNX with its spec, or a TensorRT engine).

    >>> with Classifier("engines/demo/vgg16.onnx") as clf:   # doctest: +SKIP
    ...     for result in clf.classify_iter(["calib/cat_chelsea.jpg", "broken.jpg"], k=5):
    ...         print(result.source, result.predictions or result.error)

    One Classifier owns one runner; use one per thread. ``precision`` picks among
    the engines and ONNX variants beside the model ("as-given", "auto", "fp32",
    "fp16", "int8"; see :func:`vggedge.runtime.select.select_runner`); ``selection``
    hands it a selection made already (its spec and runner are used as they are).
    ``decoder`` chooses where image files decode: "auto" (the GPU on a GPU runner with
    nvImageCodec, else the CPU decode pool), "gpu" (BackendUnavailable naming why when it
    cannot) or "cpu"; None: ``VGGEDGE_DECODER``, else auto. ``decoder_choice`` says what runs and why.
    """

    def __init__(self, model: str | Path, backend: str = "auto", *, batch_size: int = 8,
                 spec: ModelSpec | None = None, options: RunnerOptions | None = None,
                 precision: str = "as-given", selection: Selection | None = None,
                 decoder: str | None = None) -> None:
        self.model = Path(model)
        self.batch_size = count("batch_size", batch_size)
        if selection is None:  # the spec comes from the plan: the file that really runs, engine or variant
            options = dataclasses.replace(options or RunnerOptions(), max_batch=self.batch_size)
            selection = select_runner(self.model, backend, options=options, precision=precision)
        self.selection = selection
        self.spec = spec or selection.require_spec()
        if self.spec.output_kind == "features":
            raise ModelError(f"{model}: this model outputs features ({self.spec.output_name}), not class scores; "
                             "export it with include_top=True to classify")
        self.labels = labels_for(self.spec.labels, self.spec.num_classes)
        if self.spec.fixed_batch:  # selection planned it at that batch
            self.batch_size = self.spec.fixed_batch
        self.runner = selection.runner
        self.decoder_choice = select_decoder(decoder, runner=self.runner, spec=self.spec)  # decided once, here
        self.timings = Timings()
        self._owner: int | None = None

    def __enter__(self) -> "Classifier":
        self.runner.activate()
        self._owner = threading.get_ident()
        return self

    def __exit__(self, *exc: object) -> None:
        self.runner.deactivate()

    def report(self) -> dict[str, Any]:
        """Backend, file run, skipped backends, options, last stage times (same keys on every backend),
        and where images decode (``decoder``: "gpu" or "cpu", ``decoder_reason``)."""
        return {**self.selection.report(), "decoder": self.decoder_choice.kind,
                "decoder_reason": self.decoder_choice.reason}

    def _check_use(self) -> None:
        if not self.runner.active:
            raise VggEdgeError(f"{self.model}: Classifier used outside `with Classifier(...) as clf:`; "
                               "the with-block allocates the backend's session and buffers once")
        if threading.get_ident() != self._owner:
            raise VggEdgeError(f"{self.model}: this Classifier belongs to the thread that opened it; a GPU "
                               "execution context and stream are not shared: open one Classifier per thread")

    def scores(self, batch: np.ndarray) -> np.ndarray:
        """Raw model output for an already preprocessed batch (blocking; copied once)."""
        self._check_use()
        out = self.runner.infer({self.spec.input_name: batch})
        return np.array(out[self.spec.output_name], dtype=np.float32, copy=True)

    def classify_iter(self, images: Iterable[ImageLike], k: int = 5, *, strict: bool = False,
                      prepare_fn: ImagePrepareFn | None = None) -> Iterator[Classified]:
        """Top-k per image (paths or BGR arrays), yielded in order as each batch finishes.

        Decoding and preprocessing of the next batch overlap inference (``Runner.run``).
        An image that cannot be read comes back with its ``error`` and the job goes
        on; ``strict=True`` raises the first such error instead. ``prepare_fn``
        replaces the default decode-and-preprocess step (see apps/batches.py).
        """
        self._check_use()
        count("k", k)
        for batch, out in iter_batches(self.runner, self.spec, images, self.batch_size, prepare_fn=prepare_fn,
                                       copy=False,  # top-k reads the views before the next batch
                                       decoder=self.decoder_choice.kind):
            self.timings.preprocess.append(out.times.get("prepare", 0.0))
            self.timings.infer.append(out.times.get("infer", 0.0))
            self.timings.images.append(len(batch.rows))
            for result in split(batch, out, strict=strict):
                if result.ok:
                    preds = top_k(result.outputs[self.spec.output_name], self.labels, k)[0]
                    yield Classified(result.index, result.source, preds)
                else:
                    yield Classified(result.index, result.source, None, result.error)

    def classify(self, images: Sequence[ImageLike], k: int = 5) -> list[list[Prediction]]:
        """Top-k predictions per image; the first unreadable image raises ImageError naming it.

        Use :meth:`classify_iter` to keep going past bad images and get each error in its place.
        """
        return [r.predictions for r in self.classify_iter(images, k, strict=True)]
