"""Classify live camera and video streams: ``vggedge stream`` and :func:`vggedge.stream`.

The pipeline, each stage in its own thread so they overlap:

1. capture: one :class:`~vggedge.video.capture.Capture` thread per source (latest
   frame for live sources, every frame for files and slideshows);
2. batching and preprocessing: the runner's prepare worker takes the frames that
   are ready, at most one per live source (DeepStream's stream-muxer idea), and
   writes them into the runner's host buffers with the one preprocessing path;
3. inference: :meth:`Runner.run` (pinned-memory slots and streams on GPUs);
4. output: :class:`~vggedge.video.sinks.OutputWorker` feeds JSON, video and preview sinks.

>>> for r in vggedge.stream(["0", "clip.mp4"], model="engines/demo/vgg16.onnx"):  # doctest: +SKIP
...     print(r.source, r.frame, r.top_k[0].label, r.latency_s)
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ...decode_pool import shared_pool
from ...env import decoder_wanted
from ...errors import ConfigError, ModelError
from ...model.labels import Prediction, labels_for, top_k
from ...preprocess import prepare
from ...runtime.base import IDLE, RunnerOptions
from ...runtime.device_path import select_frame_path
from ...runtime.select import select_runner
from ...video.capture import Capture, Frame
from ...video.sinks import OutputWorker, Sink, SinkContext, open_sink
from ...video.sources import SourceOptions, is_number, monotonic, open_source
from .stats import ScoreSmoother, StreamStats

log = logging.getLogger(__name__)


@dataclass
class StreamResult:
    """One classified frame."""

    source: int  #: index of the source in the list given
    uri: str
    frame: int  #: frame index within that source (counting every frame read)
    timestamp: float  #: wall-clock capture time (seconds since the epoch)
    top_k: list[Prediction]
    latency_s: float  #: capture to result, end to end
    times: dict[str, float] = field(default_factory=dict)  #: seconds per stage for this frame
    fps: float = 0.0  #: recent classified frames per second of this source
    image: np.ndarray | None = field(default=None, repr=False)  #: the captured BGR frame

    def to_dict(self) -> dict[str, Any]:
        """The JSON line: everything but the image."""
        return {"source": self.source, "uri": self.uri, "frame": self.frame, "timestamp": self.timestamp,
                "top_k": [{"index": p.index, "label": p.label, "score": round(float(p.score), 6)}
                          for p in self.top_k],
                "latency_ms": round(self.latency_s * 1000.0, 3),
                "times_ms": {k: round(v * 1000.0, 3) for k, v in self.times.items()},
                "fps": round(self.fps, 2)}


@dataclass(frozen=True)
class StreamOptions:
    """How a stream runs (the CLI's options).

    ``batch_size``: most frames per inference call (default: the number of
    sources). ``every``: classify every Nth frame of each source. ``pace``: read
    files and slideshows at their native rate, as live sources (latest-frame
    policy). ``smoothing``: EMA time constant in seconds (0: off; see
    :class:`~vggedge.apps.stream.stats.ScoreSmoother`). ``max_frames``: stop
    after this many classified frames (None: until the sources end or Ctrl-C).
    ``prefetch``: take and preprocess the next batch while the current one is
    inferred (default: yes for files, for throughput; no for live sources, whose
    next frames are taken only when the model is ready for them, so a frame never
    waits behind an inference: latency is the frame's age + preprocessing + one inference).
    ``decoder``: where captured frames are preprocessed: "gpu" (uploaded once, resized and
    normalised on the device; a GPU runner with the CUDA kernels, else BackendUnavailable naming
    why), "cpu" (on the host) or "auto" (the GPU where it can); None: ``VGGEDGE_DECODER``, else auto.
    """

    backend: str = "auto"
    precision: str = "auto"
    batch_size: int | None = None
    top_k: int = 5
    every: int = 1
    pace: bool = False
    smoothing: float = 0.0
    max_frames: int | None = None
    prefetch: bool | None = None
    source: SourceOptions = SourceOptions()
    runner: RunnerOptions | None = None
    decoder: str | None = None

    def __post_init__(self) -> None:
        for name, value, top in (("every", self.every, 10**9), ("top_k", self.top_k, 10**6),
                                 ("batch_size", self.batch_size, 4096), ("max_frames", self.max_frames, 10**15)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top):
                raise ConfigError(f"--{name.replace('_', '-')} {value!r}: expected a whole number from 1 to {top}")
        if not is_number(self.smoothing) or not 0 <= self.smoothing <= 86400:
            raise ConfigError(f"--smoothing {self.smoothing!r}: expected seconds, a number >= 0 and <= 86400")
        if self.decoder is not None:
            decoder_wanted(self.decoder)  # an unknown value is refused before any source opens


class Stream:
    """A running stream: iterate it for :class:`StreamResult` objects; ``close()`` (or ``with``) stops it.

    Sources are opened when iteration starts; one that never opens raises
    SourceError naming it. An output that fails stops the stream and iteration
    raises :class:`~vggedge.errors.OutputError` naming it (``OutputClosed`` when a
    pipe's reader left). :meth:`summary` gives frames, classified, dropped,
    FPS and latency p50/p95/p99 per stage at any time.
    """

    def __init__(self, sources: Sequence[str], model: str | Path, options: StreamOptions | None = None,
                 sinks: Sequence[Sink] = ()) -> None:
        if not sources:
            raise ConfigError("stream needs at least one source URI (e.g. 0, /dev/video0, rtsp://..., clip.mp4)")
        self.options = options or StreamOptions()
        self.model = Path(model)
        self.sources = [open_source(str(uri), self.options.source) for uri in sources]
        live = self.options.pace or any(source.live for source in self.sources)
        # live sources: one batch prepared ahead, not more, so a frame never queues behind two inferences
        runner_options = self.options.runner or RunnerOptions(slots=1 if live else RunnerOptions().slots)
        runner_options = dataclasses.replace(runner_options, max_batch=self.options.batch_size or len(self.sources))
        self.selection = select_runner(self.model, self.options.backend, options=runner_options,
                                       precision=self.options.precision)  # a fixed-batch model: planned at it
        self.spec = self.selection.require_spec()  # the file that runs: ONNX variant or engine (its sidecar)
        if self.spec.output_kind == "features":
            raise ModelError(f"{model}: this model outputs features, not class scores; export it with "
                             "include_top=True to classify streams")
        self.labels = labels_for(self.spec.labels, self.spec.num_classes)
        # where frames are preprocessed, decided once (before any session loads or camera opens)
        self.decoder = select_frame_path(self.options.decoder, runner=self.selection.runner, spec=self.spec)
        self.stats = StreamStats([s.uri for s in self.sources])
        self.stats.refresh = self._sync_counts
        self.sinks = list(sinks)
        batch = self.selection.options.max_batch
        self.batch_size = batch
        self._cond = threading.Condition()
        self._captures: list[Capture] = []
        self._stop = threading.Event()
        self._smoother = ScoreSmoother(self.options.smoothing)
        self._iter: Iterator[StreamResult] | None = None
        self.prefetch = (not live) if self.options.prefetch is None else self.options.prefetch
        self._want = threading.Event()  # without prefetch: the model is ready for the next batch
        self._want.set()

    # public ----------------------------------------------------------------
    def add_sink(self, uri: str | Path) -> Sink:
        """Open the sink ``uri`` names (``-``, ``out.jsonl``, ``out.mp4``, ``http://127.0.0.1:8080``...;
        see :func:`vggedge.video.sinks.open_sink`) and send this stream's results to it."""
        context = SinkContext([s.uri for s in self.sources], lambda i: self.sources[i].fps, self.stats)
        sink = open_sink(uri, context)
        self.sinks.append(sink)
        return sink

    def __iter__(self) -> Iterator[StreamResult]:
        if self._iter is None:
            self._iter = self._results()
        return self._iter

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop capture, inference and outputs; the video file is finalised (safe twice, and from another thread)."""
        self._stop.set()
        if self._iter is None:
            OutputWorker(self.sinks).close()  # never iterated: still close the sinks given (a started preview)
        else:
            try:
                self._iter.close()  # runs the generator's cleanup
            except ValueError:
                pass  # iterating in another thread: the stop event ends it there, and it cleans up
        self._stop_captures()
        self.stats.finished = self.stats.finished or monotonic()

    def summary(self) -> dict[str, Any]:
        """Frames, classified, dropped, FPS and latency p50/p95/p99 per stage (ms)."""
        return self.stats.summary()

    # the pipeline -----------------------------------------------------------
    def _results(self) -> Iterator[StreamResult]:
        worker = OutputWorker(self.sinks, record=lambda s: self.stats.record("output", s),
                              on_failure=lambda failure: self._stop.set())  # a failed output stops the stream
        try:
            with self.selection.runner as runner, worker:
                self._start_captures()  # after activation, so a live source drops nothing while sessions load
                self.stats.started = monotonic()  # FPS counts from here, not from model loading
                log.info("stream: %d source(s) on %s, batch %d, frames preprocessed on the %s (%s)",
                         len(self.sources), runner.describe(), self.batch_size, self.decoder.kind,
                         self.decoder.reason)
                yield from self._classified(runner, worker)
        finally:
            self._stop.set()
            self._stop_captures()
            worker.close()
            self.stats.finished = monotonic()
            self._sync_counts()
        if worker.failure is not None:  # an output failed (or its reader left) after the last result was queued
            raise worker.failure

    def _classified(self, runner: Any, worker: OutputWorker) -> Iterator[StreamResult]:
        """Results of the running pipeline, each queued for the outputs before it is yielded."""
        out_name = self.spec.output_name
        with self._run(runner) as outputs:
            try:
                for out in outputs:
                    self._want.set()
                    self.stats.batch(out.times)
                    for row, frame in zip(out.outputs[out_name], out.tag):
                        result = self._result(frame, row, out.times)
                        worker.put(result)  # raises the outputs' failure (OutputError, OutputClosed)
                        yield result
                        if self.options.max_frames and self.stats.classified >= self.options.max_frames:
                            return
            finally:
                self._stop.set()  # the muxer (in the prepare worker) sees it before run() waits for it

    def _result(self, frame: Frame, scores: np.ndarray, times: dict[str, float]) -> StreamResult:
        smoothed = self._smoother.update(frame.source, frame.pts, scores)
        preds = top_k(smoothed[None, :], self.labels, self.options.top_k)[0]
        now = monotonic()
        wait = (frame.prepared_at or now) - frame.captured
        self.stats.classified_frame(frame.source, now - frame.captured, wait)
        stage = {"wait": wait, "prepare": times.get("prepare", 0.0), "infer": times.get("infer", 0.0)}
        return StreamResult(frame.source, self.sources[frame.source].uri, frame.index, frame.timestamp, preds,
                            now - frame.captured, stage, self.stats.fps(frame.source), frame.image)

    def _run(self, runner: Any) -> Any:
        """Frames through the runner: uint8 frames to the GPU once and preprocessed there when the choice
        (``self.decoder``) says GPU, else preprocessed on the CPU decode pool."""
        from ...runtime.device_path import frame_fill

        def stamp(frame: Frame) -> None:
            frame.prepared_at = monotonic()

        fill = frame_fill(runner, self.spec, stamp, self.decoder.kind)
        if fill is None:
            return runner.run(self._batches(), self._prepare, copy=True)
        return _FreedAfter(runner.run_on_device(self._batches(), fill, copy=True), fill)

    def _prepare(self, frames: list[Frame], inputs: dict[str, np.ndarray]) -> int:
        buffer = inputs[self.spec.input_name]
        now = monotonic()
        for frame in frames:
            frame.prepared_at = now
        # the batch's frames are resized and normalised in parallel on the shared pool (every core)
        shared_pool().map(lambda i: prepare(frames[i].image, self.spec, out=buffer[i]), range(len(frames)))
        return len(frames)

    def _batches(self) -> Iterator[list[Frame]]:
        """The stream muxer: lists of ready frames, at most one per live source, up to the batch size (IDLE while
        the model still has the last batch and no next one is wanted yet)."""
        timeout = self.options.source.read_timeout
        any_live = any(c.latest for c in self._captures)
        turn = 0
        while not self._stop.is_set():
            if not self.prefetch and not self._want.is_set():
                # the model has the last batch: a run that holds batches until the next one comes (GPU slots,
                # OpenVINO requests) hands it back on IDLE, and its result sets _want
                yield IDLE
                while not self._want.wait(0.1):
                    if self._stop.is_set():
                        return
            for capture in self._captures:  # watchdog, also while the other sources keep producing
                capture.check_stall(timeout)
            with self._cond:
                frames = self._gather(turn, any_live)
                while not frames and not self._stop.is_set() and not all(c.done for c in self._captures):
                    self._cond.wait(0.1)
                    for capture in self._captures:
                        capture.check_stall(timeout)
                    frames = self._gather(turn, any_live)
            if not frames:
                return
            self._want.clear()
            turn += 1
            yield frames

    def _gather(self, turn: int, any_live: bool) -> list[Frame]:
        """Frames ready now, round-robin from ``turn``: each source gives its share of the batch.

        A live source gives at most its newest frame. With only file sources, wait until
        every source that has not ended has its share ready (files never lose frames).
        """
        caps = self._captures[turn % len(self._captures):] + self._captures[:turn % len(self._captures)]
        share = max(1, self.batch_size // len(caps))
        if not any_live and any(c.pending() < share and not c.ended for c in caps):
            return []
        frames: list[Frame] = []
        for capture in caps:
            for _ in range(1 if capture.latest else share):
                frame = capture.take() if len(frames) < self.batch_size else None
                if frame is None:
                    break
                frames.append(frame)
        for capture in caps:  # room left (sources that ended): fill from the files still going
            while not capture.latest and len(frames) < self.batch_size and (frame := capture.take()) is not None:
                frames.append(frame)
        return frames

    def _start_captures(self) -> None:
        o = self.options
        for i, source in enumerate(self.sources):
            capture = Capture(i, source, pace=o.pace, every=o.every, notify=self._cond,
                              depth=max(8, 2 * self.batch_size))
            self._captures.append(capture)
            capture.start()  # SourceError naming the URI if it never opens

    def _stop_captures(self) -> None:
        for capture in self._captures:
            capture.stop()

    def _sync_counts(self) -> None:
        for capture in self._captures:
            c = capture.counts
            self.stats.update_source(capture.id, frames=c.read, dropped=c.dropped, skipped=c.skipped,
                                     corrupt=c.corrupt, reconnects=c.reconnects, stalls=c.stalls,
                                     connected=capture.connected)


class _FreedAfter:
    """A run iterator that also frees the device fill (its staging buffers) when closed."""

    def __init__(self, outputs: Any, fill: Any) -> None:
        self.outputs, self.fill = outputs, fill

    def __enter__(self) -> Any:
        return self.outputs.__enter__()

    def __exit__(self, *exc: object) -> None:
        try:
            self.outputs.__exit__(*exc)
        finally:
            self.fill.free()


def stream(sources: Sequence[str], model: str | Path, *, sinks: Sequence[Sink] = (), **options: Any) -> Stream:
    """Classify one or more video sources; iterate the result for :class:`StreamResult` objects.

    ``sources``: URIs (``csi://0``, ``/dev/video0``, ``0``, ``rtsp://...``,
    ``http://...``, ``clip.mp4``, a folder or glob of images). ``options`` are
    :class:`StreamOptions` fields, plus :class:`~vggedge.video.sources.SourceOptions`
    fields (``width``, ``height``, ``rate``, ``loop``, ``read_timeout``...).
    """
    source_fields = {f.name for f in dataclasses.fields(SourceOptions)}
    source_opts = {k: options.pop(k) for k in list(options) if k in source_fields}
    unknown = set(options) - {f.name for f in dataclasses.fields(StreamOptions)}
    if unknown:
        raise ConfigError(f"stream(): unknown options {sorted(unknown)}")
    return Stream(sources, model, StreamOptions(source=SourceOptions(**source_opts), **options), sinks)


def wait_for(predicate, timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass (used by the preview and tests)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
