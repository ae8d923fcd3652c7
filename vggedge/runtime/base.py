"""The runner contract shared by every backend (TensorRT, onnxruntime CUDA, onnxruntime CPU).

A runner is cheap to construct and touches no device until :meth:`Runner.activate`.
``infer`` checks names, dtypes and shapes here, before the backend hook runs.
Outputs may be views of buffers the runner reuses: copy them to keep them past
the next call.
"""
from __future__ import annotations

import queue
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np

from ..errors import ConfigError, InputError, VggEdgeError

#: prepare(item, {input name: host array at the max batch}) -> rows written (the batch size)
PrepareFn = Callable[[Any, "dict[str, np.ndarray]"], int]


@dataclass(frozen=True)
class RunnerOptions:
    """The one set of options every runner takes (selection passes them through unchanged).

    ``max_batch``: the largest batch ``infer``/``run`` will see (apps set it from
    their batch size); ``device``: GPU ordinal; ``slots``: batches in flight in
    ``run()`` (GPU slots, or prepared batches queued ahead on the CPU);
    ``threads``: CPU inference threads (None: the backend's tuned default);
    ``micro_batch``: run a larger batch as calls of at most this many rows and
    join the outputs (None: one call; the CPU planner sets the measured best,
    invisible to apps).
    """

    max_batch: int = 8
    device: int = 0
    slots: int = 2
    threads: int | None = None
    micro_batch: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_batch", "slots"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"runner option {name}={value!r}: expected an integer >= 1")
        if isinstance(self.device, bool) or not isinstance(self.device, int) or self.device < 0:
            raise ConfigError(f"runner option device={self.device!r}: expected a GPU ordinal >= 0")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 1):
            raise ConfigError(f"runner option threads={self.threads!r}: expected an integer >= 1 or None")
        if self.micro_batch is not None and (isinstance(self.micro_batch, bool) or not isinstance(self.micro_batch, int)
                                             or self.micro_batch < 1):
            raise ConfigError(f"runner option micro_batch={self.micro_batch!r}: expected an integer >= 1 or None")


@dataclass
class BatchOutput:
    """One batch's result from :meth:`Runner.run`, in input order.

    ``outputs`` holds exactly ``batch`` rows per output (padding removed);
    ``tag`` is the item the batch was made from; ``times`` holds seconds per
    stage: ``prepare`` and ``infer`` always, ``h2d``/``compute``/``d2h`` on GPUs.
    """

    outputs: dict[str, np.ndarray]
    batch: int
    tag: Any = None
    times: dict[str, float] = field(default_factory=dict)


class _Idle:
    """The type of :data:`IDLE` (one instance; its repr names it)."""

    def __repr__(self) -> str:
        return "vggedge.runtime.base.IDLE"


#: An item source of :meth:`Runner.run` that has no next batch yet may yield IDLE: the run then hands
#: back the oldest batch in flight, if any, instead of holding it until more input comes (a source fed
#: by callers that each wait for their own result, :class:`vggedge.runtime.feed.RunFeed`).
IDLE = _Idle()


@dataclass(frozen=True)
class TensorMeta:
    """Name, dtype and shape of one input; ``None`` marks a dynamic dimension."""

    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...]

    def check(self, array: np.ndarray) -> None:
        """Raise InputError naming the tensor if ``array`` does not fit."""
        if array.dtype != self.dtype:
            raise InputError(f"input {self.name!r}: dtype {array.dtype}, expected {self.dtype}")
        if array.ndim != len(self.shape) or any(
            want is not None and want != got for want, got in zip(self.shape, array.shape)
        ):
            raise InputError(f"input {self.name!r}: shape {tuple(array.shape)}, expected {self.shape_text()}")

    def shape_text(self) -> str:
        """``(N, 3, 224, 224)`` with N for dynamic dimensions."""
        return "(" + ", ".join("N" if d is None else str(d) for d in self.shape) + ")"


class RunIterator(Iterator[BatchOutput]):
    """The iterator :meth:`Runner.run` returns: closing it (or exhausting it) frees the runner for another run."""

    def __init__(self, runner: "Runner", inner: Iterator[BatchOutput]) -> None:
        self._runner, self._inner, self._open = runner, inner, True

    def __next__(self) -> BatchOutput:
        if not self._open:
            raise StopIteration
        try:
            return next(self._inner)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop early: wait for work in flight and release the runner's run slot (safe twice)."""
        if self._open:
            self._open = False
            try:
                self._inner.close()
            finally:
                self._runner._running = False

    def __enter__(self) -> "RunIterator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


class Runner(ABC):
    """Base of every backend runner: ``with runner: runner.infer({name: array})``."""

    #: registry name, e.g. "ort-cpu"
    name = "runner"
    #: the backend (``--backend``) this runner serves: its own name, unless it runs variants of another backend
    backend = ""

    def __init__(self, options: RunnerOptions | None = None) -> None:
        self.runner_options: RunnerOptions = options or RunnerOptions()
        self._active = False
        self._meta: dict[str, TensorMeta] | None = None
        self._running = False
        #: seconds per stage of the last batch (``infer``; GPUs add h2d/compute/d2h)
        self.last_times: dict[str, float] = {}

    # lifecycle -----------------------------------------------------------
    def activate(self) -> "Runner":
        """Allocate everything once (sessions, contexts, buffers, streams)."""
        if not self._active:
            self._activate()
            self._active = True
        return self

    def deactivate(self) -> None:
        """Release what :meth:`activate` allocated; safe to call twice."""
        if self._active:
            self._active = False
            self._deactivate()

    def __enter__(self) -> "Runner":
        return self.activate()

    def __exit__(self, *exc: object) -> None:
        self.deactivate()

    @property
    def active(self) -> bool:
        return self._active

    # inference -----------------------------------------------------------
    def input_metadata(self) -> dict[str, TensorMeta]:
        """Inputs by name, with dynamic dimensions as None."""
        self._require_active("input_metadata")
        if self._meta is None:
            self._meta = self._input_metadata()
        return self._meta

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch: ``{input name: array}`` -> ``{output name: array}``."""
        self._require_active("infer")
        meta = self.input_metadata()
        missing = sorted(set(meta) - set(feed))
        extra = sorted(set(feed) - set(meta))
        if missing or extra:
            raise InputError(f"{self.name}: inputs missing {missing}, unexpected {extra}; expected {sorted(meta)}")
        for name, tensor_meta in meta.items():
            tensor_meta.check(np.asarray(feed[name]))
        return self._infer_micro(feed)

    def _infer_micro(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One backend call, or ``micro_batch``-row calls joined in order when the batch is larger."""
        step = self.runner_options.micro_batch
        rows = {np.shape(a)[0] if np.ndim(a) else 0 for a in feed.values()}
        if step is None or len(rows) != 1 or rows.pop() <= step:
            return self._infer(feed)
        total = np.shape(next(iter(feed.values())))[0]
        parts = []  # each call's outputs copied at once: a backend may reuse its output buffers
        for i in range(0, total, step):
            out = self._infer({k: np.asarray(a)[i:i + step] for k, a in feed.items()})
            parts.append({k: np.array(v, copy=True) for k, v in out.items()})
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def describe(self) -> str:
        """A short human description (backend, provider, precision)."""
        return self.name

    def report(self) -> dict[str, Any]:
        """What this runner can report, the same way for every backend (extended by subclasses)."""
        return {"backend": self.name, "description": self.describe(), "options": self.runner_options,
                "last_times": dict(self.last_times)}

    # overlapped inference ---------------------------------------------------
    def batch_range(self) -> tuple[int, int]:
        """(min, max) rows one submission takes: a fixed-batch model takes exactly its batch."""
        fixed = {m.shape[0] for m in self.input_metadata().values() if m.shape and m.shape[0] is not None}
        if fixed:
            return max(fixed), max(fixed)
        return 1, self.runner_options.max_batch

    def run(self, batches: Iterable[Any], prepare: PrepareFn | None = None, *, copy: bool = True
            ) -> Iterator[BatchOutput]:
        """Run every batch and yield results in input order, overlapping preparation with inference.

        ``prepare(item, inputs)`` writes one batch into host arrays sized for the
        max batch and returns its row count; without it each item is a ready feed
        (``{name: array}``, or one array for a single-input model). A short batch
        below the model's minimum (fixed-batch models) is padded on submission and
        its outputs cut back to the rows given. ``copy=False`` may return views
        of reused buffers, valid until the next result is requested. A source
        that has no next batch yet may yield :data:`IDLE` (nothing is submitted;
        finished batches are handed back instead of waiting for more input).

        Only one ``run()`` may be active per runner, counted from this call.
        The base implementation prepares in one bounded worker thread (OpenCV and
        onnxruntime release the GIL) while this thread runs inference; GPU runners
        override :meth:`_run` with pinned-memory slots and streams.
        """
        self._require_active("run")
        if self._running:
            raise VggEdgeError(f"{self.name}: run() called while another run() on this runner is active; "
                               "finish or close() the first iterator, or use one runner per consumer")
        self._running = True
        return RunIterator(self, self._run(iter(batches), prepare, copy))

    def _host_buffers(self) -> dict[str, np.ndarray]:
        rows = self.batch_range()[1]
        return {name: np.zeros((rows, *[d or 1 for d in m.shape[1:]]), dtype=m.dtype)
                for name, m in self.input_metadata().items()}

    def _as_feed(self, item: Any) -> dict[str, np.ndarray]:
        if isinstance(item, Mapping):
            return {k: np.asarray(v) for k, v in item.items()}
        meta = self.input_metadata()
        if len(meta) != 1:
            raise InputError(f"{self.name}: the model has inputs {sorted(meta)}; pass {{name: array}} feeds")
        return {next(iter(meta)): np.asarray(item)}

    def _run(self, items: Iterator[Any], prepare: PrepareFn | None, copy: bool) -> Iterator[BatchOutput]:
        """CPU overlap: a worker prepares up to ``slots`` batches ahead into its own buffers."""
        depth = self.runner_options.slots
        free: queue.Queue = queue.Queue()
        for _ in range(depth + 1):  # one buffer set being inferred, ``depth`` prepared ahead
            free.put(self._host_buffers() if prepare is not None else None)
        ready: queue.Queue = queue.Queue(maxsize=depth)
        stop = threading.Event()

        def worker() -> None:
            try:
                for item in items:
                    if item is IDLE:  # results are handed back as soon as inferred here: nothing to flush
                        continue
                    buffers = free.get()
                    if stop.is_set():
                        return
                    t0 = time.perf_counter()
                    if prepare is None:
                        feed, n = self._as_feed(item), None
                    else:
                        n = int(prepare(item, buffers))
                        feed = buffers
                    ready.put(("ok", item, feed, n, buffers, time.perf_counter() - t0))
                    if stop.is_set():
                        return
                ready.put(("end", None, None, None, None, 0.0))
            except BaseException as exc:  # handed to the consumer, raised there in order
                ready.put(("error", exc, None, None, None, 0.0))

        thread = threading.Thread(target=worker, name=f"{self.name}-prepare", daemon=True)
        thread.start()
        try:
            while True:
                kind, item, feed, n, buffers, prep_s = ready.get()
                if kind == "end":
                    return
                if kind == "error":
                    raise item
                yield self._infer_rows(feed, n, item, prep_s, copy)
                free.put(buffers)
        finally:
            stop.set()
            free.put(None)  # wake a worker waiting for a buffer
            deadline = time.monotonic() + 5.0  # a source blocked in next() cannot be interrupted: leave it
            while thread.is_alive() and time.monotonic() < deadline:
                try:
                    ready.get(timeout=0.05)  # unblock a worker waiting to hand over a batch
                except queue.Empty:
                    pass

    def _infer_rows(self, feed: dict[str, np.ndarray], n: int | None, item: Any, prep_s: float,
                    copy: bool) -> BatchOutput:
        """Infer the first ``n`` rows of ``feed`` (None: all), padding up to the model's minimum batch."""
        low, high = self.batch_range()
        if n is None:
            sizes = {a.shape[0] for a in feed.values()}
            n = sizes.pop() if len(sizes) == 1 else -1
        if not 1 <= n <= high:
            raise InputError(f"{self.name}: batch of {n} rows is outside 1..{high} (max_batch={high}; "
                             "raise the runner's max_batch or split the batch)")
        rows = max(n, low)
        if any(a.shape[0] < rows for a in feed.values()):  # a ready feed shorter than a fixed batch
            feed = {k: np.concatenate([a, np.repeat(a[-1:], rows - a.shape[0], axis=0)]) for k, a in feed.items()}
        t0 = time.perf_counter()
        out = self.infer({k: a[:rows] for k, a in feed.items()})
        infer_s = time.perf_counter() - t0
        self.last_times = {**self.last_times, "infer": infer_s}
        outputs = {k: (np.array(v[:n], copy=True) if copy else v[:n]) for k, v in out.items()}
        return BatchOutput(outputs, n, item, {"prepare": prep_s, **self.last_times})

    def _require_active(self, what: str) -> None:
        if not self._active:
            raise VggEdgeError(f"{self.name}: {what}() called before activate(); use `with runner:`")

    # backend hooks --------------------------------------------------------
    @abstractmethod
    def _activate(self) -> None: ...

    @abstractmethod
    def _deactivate(self) -> None: ...

    @abstractmethod
    def _input_metadata(self) -> dict[str, TensorMeta]: ...

    @abstractmethod
    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...
