"""One capture thread per source: latest-frame policy for live sources, every frame for files.

A live source (camera, network stream, or a file paced at its native rate)
keeps only its newest frame: a frame not taken before the next arrives is
*dropped* and counted, so the pipeline never falls behind the camera. Files
and slideshows keep every frame in a small bounded queue (the reader waits).

A read that returns nothing for ``read_timeout`` seconds is *stalled*: the
watchdog abandons that reader (a blocked OpenCV read cannot be interrupted)
and the source is reopened. A failed read reconnects with exponential
backoff; both are reported in the log and counted.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .sources import FrameError, Source, SourceError, monotonic, sleep_unless, wait_backoff

log = logging.getLogger(__name__)


@dataclass
class Frame:
    """One captured frame: its source id, frame index in that source, and capture times."""

    source: int
    index: int
    image: np.ndarray
    timestamp: float  #: wall-clock capture time (time.time())
    captured: float  #: monotonic capture time, the start of end-to-end latency
    pts: float  #: media time in seconds (frame index / fps for files; capture time for live sources)
    prepared_at: float = 0.0  #: monotonic time preprocessing started (set by the pipeline)


@dataclass
class CaptureCounts:
    """What one capture thread has seen."""

    read: int = 0  #: frames read from the source
    dropped: int = 0  #: frames replaced by a newer one before the pipeline took them (live sources)
    skipped: int = 0  #: frames left out on purpose by ``every``
    corrupt: int = 0  #: frames that could not be decoded (skipped)
    reconnects: int = 0  #: times the source was reopened after a failure or stall
    stalls: int = 0  #: reads that produced nothing for read_timeout seconds
    errors: list = field(default_factory=list)  #: the last few failure messages


class Capture:
    """Reads one :class:`Source` in a thread; :meth:`take` hands frames to the pipeline.

    ``latest``: keep only the newest frame (default for live sources); ``pace``:
    read a file at its native rate as if it were live; ``every``: publish only every
    Nth frame; ``notify``: a Condition notified when a frame arrives.
    """

    def __init__(self, source_id: int, source: Source, *, latest: bool | None = None, pace: bool = False,
                 every: int = 1, depth: int = 8, notify: threading.Condition | None = None,
                 reconnect: bool = True) -> None:
        self.id, self.source = source_id, source
        self.pace = pace
        self.latest = (source.live or pace) if latest is None else latest
        self.every, self.depth = max(1, int(every)), max(1, int(depth))
        self.reconnect = reconnect and source.live
        self.counts = CaptureCounts()
        self.ended = False
        self.connected = False
        self.last_frame_at: float | None = None
        self._frames: collections.deque[Frame] = collections.deque(maxlen=1 if self.latest else None)
        self._cond = notify or threading.Condition()
        self._stop = threading.Event()
        self._generation = 0
        self._thread: threading.Thread | None = None
        self._progress = monotonic()
        self._index = 0
        self._reconnecting = False  # in a backoff wait: not a stall

    # lifecycle -------------------------------------------------------------
    def start(self) -> "Capture":
        """Open the source (SourceError naming it if it never opens) and start reading."""
        self.source.open()
        self.connected = True
        self._spawn()
        return self

    def stop(self) -> None:
        """Stop reading and release the source (a reader blocked in OpenCV is left to finish on its own)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            if not self._thread.is_alive():
                self.source.close()

    def __enter__(self) -> "Capture":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # consumer side ---------------------------------------------------------
    def take(self) -> Optional[Frame]:
        """The oldest waiting frame (the only one for live sources), or None; call with the Condition held."""
        if self._frames:
            frame = self._frames.popleft()
            if not self.latest:
                self._cond.notify_all()  # room in the queue for the reader
            return frame
        return None

    def pending(self) -> int:
        return len(self._frames)

    @property
    def done(self) -> bool:
        """Ended and nothing left to take."""
        return self.ended and not self._frames

    def check_stall(self, timeout: float) -> bool:
        """Watchdog: True (and the reader replaced) when a live read made no progress for ``timeout`` seconds."""
        if not self.source.live or self.ended or self._stop.is_set() or self._reconnecting:
            return False
        if monotonic() - self._progress < timeout:
            return False
        self.counts.stalls += 1
        self._note(f"{self.source.uri}: no frame for {timeout:g} s (stalled read); reconnecting")
        self.connected = False
        self._spawn(reopen=True)
        return True

    # reader side -----------------------------------------------------------
    def _spawn(self, reopen: bool = False) -> None:
        self._generation += 1
        self._progress = monotonic()
        self._thread = threading.Thread(target=self._reader, args=(self._generation, reopen),
                                        name=f"capture-{self.id}", daemon=True)
        self._thread.start()

    def _current(self, generation: int) -> bool:
        return generation == self._generation and not self._stop.is_set()

    def _reader(self, generation: int, reopen: bool) -> None:
        try:
            self._read_loop(generation, reopen)
        except Exception as exc:  # anything unexpected ends this source, reported; the others go on
            self._note(f"source {self.id} ({self.source.uri}) stopped: {exc}")
            if self._current(generation):
                self.ended, self.connected = True, False
                with self._cond:
                    self._cond.notify_all()

    def _read_loop(self, generation: int, reopen: bool) -> None:
        failures = 0
        if reopen and not self._reopen(generation, failures):
            return
        start = monotonic()
        while self._current(generation):
            try:
                image = self.source.read()
            except FrameError as exc:
                self.counts.corrupt += 1
                self._note(f"source {self.id} ({self.source.uri}): skipped corrupt frame: {exc}")
                self._index += 1
                continue
            except SourceError as exc:
                image, failed = None, str(exc)
            else:
                failed = None
            if not self._current(generation):
                return
            self._progress = monotonic()
            if image is None:
                if self.reconnect:
                    self.connected = False
                    self._note(failed or f"{self.source.uri}: stream ended or dropped; reconnecting")
                    failures += 1
                    if not self._reopen(generation, failures):
                        return
                    continue
                if self.source.options.loop and self.counts.read > 0:
                    self.source.open()
                    continue
                break
            failures = 0
            self._publish(image)
            if self.pace:
                self._wait_pace(start)
        if self._current(generation):
            self.ended = True
            with self._cond:
                self._cond.notify_all()

    def _reopen(self, generation: int, failures: int) -> bool:
        """Reopen with backoff until it works or the capture stops; False when stopped."""
        self._reconnecting = True
        try:
            return self._reopen_loop(generation, failures)
        finally:
            self._reconnecting = False
            self._progress = monotonic()

    def _reopen_loop(self, generation: int, failures: int) -> bool:
        attempt = max(0, failures - 1)
        while self._current(generation):
            if sleep_unless(self._stop, wait_backoff(attempt)):
                return False
            self._progress = monotonic()
            try:
                self.source.open()
            except SourceError as exc:
                self._note(f"reconnect {attempt + 1} failed: {exc}")
                attempt += 1
                continue
            if not self._current(generation):
                return False
            self.counts.reconnects += 1
            self.connected = True
            log.warning("source %d (%s): reconnected (attempt %d)", self.id, self.source.uri, attempt + 1)
            return True
        return False

    def _publish(self, image: np.ndarray) -> None:
        index = self._index
        self._index += 1
        self.counts.read += 1
        now, wall = monotonic(), time.time()
        self.last_frame_at = now
        if index % self.every:
            self.counts.skipped += 1
            return
        fps = self.source.fps
        pts = now if (self.source.live or not fps) else index / fps
        frame = Frame(self.id, index, image, wall, now, pts)
        with self._cond:
            if self.latest:
                if self._frames:
                    self.counts.dropped += 1
            else:
                while len(self._frames) >= self.depth and not self._stop.is_set():
                    self._cond.wait(0.1)
            self._frames.append(frame)
            self._cond.notify_all()

    def _wait_pace(self, start: float) -> None:
        fps = self.source.fps or 30.0
        due = start + self.counts.read / fps
        sleep_unless(self._stop, due - monotonic())

    def _note(self, message: str) -> None:
        log.warning("%s", message)
        self.counts.errors = (self.counts.errors + [message])[-5:]
