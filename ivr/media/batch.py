"""Caller frames of every call, measured together: one numpy step per event-loop iteration.

Measuring one 20 ms frame's energy costs ~2 us, nearly all of it numpy's per-call overhead; measuring the
frames of every call that arrived in the same loop iteration in one step costs ~0.3-0.5 us a frame.
:class:`LevelBatch` collects ``(sink, frame)`` pairs as the socket callbacks deliver them, asks its
``schedule`` function (the event loop's ``call_soon``) for one flush per batch, and at the flush hands
each sink its frame with the level (:func:`ivr.media.vad.frame_levels`), in arrival order.

The media layer stays free of asyncio: whoever owns the loop passes its ``call_soon`` in
(``ivr.call.frame_batch`` keeps one batch per loop). A sink's frame reaches it later in the same
millisecond instead of at once; nothing else changes (each call's frames keep their order).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from ivr.media.vad import frame_levels

log = logging.getLogger(__name__)

LevelSink = Callable[[bytes, float], None]
"""Receives one caller frame and its level in dBFS (DC removed, as ``EnergyVad.level`` measures it)."""

Schedule = Callable[[Callable[[], None]], object]
"""Runs a callback soon, once, after the current callbacks (``loop.call_soon``)."""

FAILURE_LOG_INTERVAL_S = 1.0
"""A sink that fails on every frame fails 50 times a second per call: one traceback a second at most."""


class LevelBatch:
    """Frames from many calls, measured in one step when the batch is flushed.

    Frames of different sizes (8 and 16 kHz calls in one process) are measured per size. A sink that
    raises costs only its own frame: the others of the batch are still delivered.
    """

    __slots__ = ("_clock", "_failed", "_groups", "_logged_at", "_schedule", "_scheduled", "flushes", "frames")

    def __init__(self, schedule: Schedule, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._schedule = schedule
        self._clock = clock
        self._failed = 0
        """Frames whose sink failed since the last traceback logged (at most one a second)."""
        self._logged_at = -FAILURE_LOG_INTERVAL_S
        self._groups: dict[int, tuple[list[LevelSink], list[bytes]]] = {}
        self._scheduled = False
        self.flushes = 0
        """Batches measured so far (frames / flushes is the mean batch size)."""
        self.frames = 0

    def __len__(self) -> int:
        """Frames waiting for the next flush."""
        return sum(len(frames) for _, frames in self._groups.values())

    def add(self, sink: LevelSink, frame: bytes) -> None:
        """Queue ``frame`` (whole s16le samples) for ``sink``; the first frame of a batch schedules its flush."""
        group = self._groups.get(len(frame))
        if group is None:
            group = self._groups[len(frame)] = ([], [])
        if not self._scheduled:
            self._scheduled = True
            self._schedule(self.flush)
        group[0].append(sink)
        group[1].append(frame)

    def flush(self) -> None:
        """Measure every queued frame and deliver each to its sink (the scheduled callback)."""
        self._scheduled = False
        groups, self._groups = self._groups, {}
        for size, (sinks, frames) in groups.items():
            self.flushes += 1
            self.frames += len(frames)
            for sink, frame, level in zip(sinks, frames, frame_levels(frames, size // 2), strict=True):
                try:
                    sink(frame, level)
                except Exception:
                    self._sink_failed()

    def _sink_failed(self) -> None:
        self._failed += 1
        now = self._clock()
        if now - self._logged_at >= FAILURE_LOG_INTERVAL_S:
            self._logged_at = now
            failed, self._failed = self._failed, 0
            log.exception(
                "a caller frame's handler failed (only that frame is lost; %d frames lost since the last "
                "such line)",
                failed,
            )
