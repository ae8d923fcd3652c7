"""The Ray engine's inference actor: one runner per actor, activated once, over batches of images.

:class:`RayInfer` takes either model-ready tensors (the CPU route: Ray's CPU tasks
decoded and preprocessed them) or checked encoded files (the GPU route, ``decoder``
given), which it decodes on its GPU straight into the runner's input buffer with the
local engine's fill (:func:`vggedge.apps.batch.local.gpu_fill`: per-file CPU fallback,
an error row for a file nobody decodes). An actor whose runner cannot decode on the
GPU (``decoder="auto"``) decodes on its CPU instead (:func:`.ray_tasks.decode_checked`).
Every batch comes back as one Arrow table in :func:`staged_schema`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ...redact import redact_uri
from ...runtime.base import RunnerOptions
from ...runtime.feed import RunFeed
from ...runtime.select import select_runner
from .decode import Limits
from .names import row_key
from .rows import RowMaker, columns
from .ray_tasks import decode_checked, worker
from .writers import arrow_schema

#: staged columns beside the result row's: why a file failed, and who decoded and inferred it
EXTRA_COLUMNS = (("error", "string"), ("kind", "string"), ("worker", "string"), ("worker_rss_mb", "float64"),
                 ("decode_worker", "string"), ("decode_rss_mb", "float64"), ("decoder", "string"),
                 ("decoder_reason", "string"))


def staged_schema(features: bool):
    """Result columns plus the error, per-worker memory and decoder columns Ray stages."""
    import pyarrow as pa

    base = arrow_schema(columns(features))
    return pa.schema(list(base) + [pa.field(n, getattr(pa, t)()) for n, t in EXTRA_COLUMNS])


class RayInfer:
    """Ray actor: one runner, activated once, over batches of prepared tensors or checked encoded files.

    ``decoder`` None: batches carry ``tensor`` (the CPU route). Else the decoder asked
    for ("auto" or "gpu", resolved on the driver): batches carry checked ``bytes`` and
    this actor decodes them, on its GPU where the choice says so (a "gpu" that cannot
    is a BackendUnavailable naming why), else on its CPU.

    Every call goes through one :class:`~vggedge.runtime.feed.RunFeed`, the runner's
    overlapped ``run()`` kept open across calls: with several calls running at once
    (``max_concurrent_calls_per_actor``), the next batch is decoded into a free slot
    while the previous one is inferred, as in the local engine.
    """

    def __init__(self, model: str, backend: str, precision: str, batch_size: int, top_k: int, features: bool,
                 threads: int | None, decoder: str | None = None, limits: Limits = Limits()) -> None:
        selection = select_runner(model, backend, precision=precision,
                                  options=RunnerOptions(max_batch=batch_size, threads=threads))
        self.spec = selection.require_spec()  # of the file this actor runs (an engine's from its sidecar)
        self.rows = RowMaker(self.spec, Path(model).name, self.spec.precision, selection.backend, top_k, features)
        self.limits, self.encoded, self.fill = limits, decoder is not None, None
        self.decoder, self.reason = "cpu", ""
        if self.encoded:
            from .local import choose_decoder

            choice = choose_decoder(decoder, selection.runner, self.spec)  # before the session loads
            self.decoder, self.reason = choice.kind, choice.reason
        self.runner = selection.runner.activate()
        try:
            if self.decoder == "gpu":
                from .local import gpu_fill

                self.fill = gpu_fill(self.spec, self.runner, decoder)
                self.feed = RunFeed(self.runner, device_fill=self.fill, name="vggedge-ray-feed").start()
            else:
                self.feed = RunFeed(self.runner, _copy_rows(self.spec.input_name), name="vggedge-ray-feed").start()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """End the feed, free the GPU fill and release the runner (safe twice; Ray calls it through ``__del__``)."""
        feed, fill, self.feed, self.fill = getattr(self, "feed", None), self.fill, None, None
        try:
            if feed is not None:
                feed.close()
            if fill is not None:
                fill.free()
        finally:
            self.runner.deactivate()

    def __del__(self) -> None:
        if getattr(self, "runner", None) is not None:
            self.close()

    def __call__(self, batch: dict[str, np.ndarray]):
        import pyarrow as pa

        if self.encoded and self.fill is None:  # checked files, decoded here on the CPU
            batch = decode_checked(batch, self.spec, self.limits)
        errors = [str(e) for e in batch["error"]]
        kinds = [str(k) for k in batch["kind"]]
        good = [i for i, e in enumerate(errors) if not e]
        rows = self._on_gpu(batch, good, errors, kinds) if self.fill is not None else self._infer(batch, good)
        who, rss = worker()
        table = []
        for i, path in enumerate(batch["path"]):
            row = rows.get(i) or {"path": row_key(str(path))}  # staged on disk: no credentials, as in the output
            row.update(error=redact_uri(errors[i]) or None, kind=kinds[i] or None, worker=who, worker_rss_mb=rss,
                       decode_worker=str(batch["decode_worker"][i]), decode_rss_mb=float(batch["decode_rss_mb"][i]),
                       decoder=self.decoder, decoder_reason=self.reason)
            table.append(row)
        return pa.Table.from_pylist(table, schema=staged_schema(self.rows.features))

    def _infer(self, batch: dict[str, np.ndarray], good: list[int]) -> dict[int, dict[str, Any]]:
        """Rows of the good offsets from prepared tensors (the runner pads a fixed-batch model's short batch)."""
        if not good:
            return {}
        out = self.feed.submit(batch["tensor"][good])
        made = self.rows.rows([str(batch["path"][i]) for i in good], out.outputs[self.spec.output_name],
                              [float(batch["decode_s"][i]) for i in good], out.times.get("infer", 0.0))
        return dict(zip(good, made))

    def _on_gpu(self, batch: dict[str, np.ndarray], good: list[int], errors: list[str],
                kinds: list[str]) -> dict[int, dict[str, Any]]:
        """Rows of the good offsets, decoded on the GPU into the runner's input; files nobody decodes get their
        error in ``errors``/``kinds`` (keyed by offset, so a path given twice stays two rows)."""
        from .local import Batch

        if not good:
            return {}
        job = Batch(keys=[str(i) for i in good], tensors=[np.frombuffer(batch["bytes"][i], np.uint8) for i in good],
                    decode_s=[float(batch["decode_s"][i]) for i in good])
        out = self.feed.submit(job)  # the fill has run when this returns: job.keys and job.errors are final
        for failed in job.errors:  # the GPU decoder and the CPU fallback both refused it
            errors[int(failed["path"])], kinds[int(failed["path"])] = failed["reason"], failed["kind"]
        if not job.keys:
            return {}
        offsets = [int(k) for k in job.keys]
        outputs = out.outputs[self.spec.output_name][:len(offsets)]
        made = self.rows.rows([str(batch["path"][i]) for i in offsets], outputs, job.decode_s,
                              out.times.get("infer", 0.0))
        return dict(zip(offsets, made))


def _copy_rows(input_name: str):
    """``prepare`` for the feed: copy one call's tensors into the runner's host input (no reference to the actor,
    so the actor is collected, and closed, when Ray drops it)."""

    def prepare(tensors: np.ndarray, inputs: dict[str, np.ndarray]) -> int:
        inputs[input_name][:len(tensors)] = tensors
        return len(tensors)

    return prepare
