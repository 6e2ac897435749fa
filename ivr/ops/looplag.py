"""How late the event loop runs, and what held it when it stalled.

The loop that paces audio must never be held up: a callback that runs 30 ms makes every live call's
frames 30 ms late. :class:`LoopMonitor` proves it does not happen (or shows when it does):

* a heartbeat callback scheduled every ``interval`` on the loop measures how late it ran against its
  deadline: that lateness is the loop lag, observed into ``ivr_loop_lag_seconds``;
* a watchdog thread notices a heartbeat that is overdue by more than ``stall_after``, samples the loop
  thread's stack *while* it is stalled (``sys._current_frames``), and once the loop runs again writes one
  WARNING line with the stall's length and the innermost frames of what ran. The logging happens on the
  watchdog thread, never on the loop.

A stall inside C code that holds the GIL cannot be sampled while it lasts (the watchdog needs the GIL):
it is still measured and logged, as "in native code".
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

log = logging.getLogger(__name__)

LOOP_LAG_BUCKETS: tuple[float, ...] = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)
"""Seconds. Frames are 20 ms apart and the pacing target is p99 <= 5 ms: most mass sits below 2 ms."""

Observer = Callable[[float], None]


@dataclass(frozen=True, slots=True)
class Stall:
    """One stall the watchdog saw: how long the loop did not run, and where it was."""

    seconds: float
    where: str


def describe_stack(frame: FrameType, limit: int = 3) -> str:
    """The innermost ``limit`` frames as ``file:line function`` (project files shortened).

    Walks the frames itself rather than through :mod:`traceback`, which reads every file on the stack
    into :mod:`linecache` for source lines this never prints: file reads on the watchdog thread (holding
    the GIL), and small strings that outlive the calls they were read during.
    """
    parts: list[str] = []
    marker = os.sep + "ivr" + os.sep
    current: FrameType | None = frame
    while current is not None and len(parts) < limit:
        name = current.f_code.co_filename
        name = "ivr" + os.sep + name.rsplit(marker, 1)[1] if marker in name else os.path.basename(name)
        parts.append(f"{name}:{current.f_lineno} {current.f_code.co_name}")
        current = current.f_back
    return " < ".join(parts) if parts else "?"


class LoopMonitor:
    """Measure one loop's lag; log stalls over ``stall_after`` seconds, naming what ran."""

    def __init__(
        self,
        observe: Observer | None = None,
        *,
        interval: float = 0.005,
        stall_after: float = 0.010,
        on_stall: Callable[[Stall], None] | None = None,
    ) -> None:
        if interval <= 0 or stall_after <= interval:
            raise ValueError("need 0 < interval < stall_after")
        self.observe = observe
        self.interval = interval
        self.stall_after = stall_after
        self.on_stall = on_stall
        self.stalls = 0
        self.max_lag = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0
        self._beat = 0.0  # time.monotonic() of the last heartbeat, read by the watchdog
        self._loop_thread = 0
        self._stop = threading.Event()
        self._watchdog: threading.Thread | None = None

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Start measuring the running loop (call from the loop's thread)."""
        loop = loop or asyncio.get_running_loop()
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._beat = time.monotonic()
        self._due = loop.time() + self.interval
        self._handle = loop.call_at(self._due, self._tick)
        self._watchdog = threading.Thread(target=self._watch, name="ivr-loop-watchdog", daemon=True)
        self._watchdog.start()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._stop.set()
        if self._watchdog is not None:
            self._watchdog.join(timeout=1.0)
            self._watchdog = None

    def _tick(self) -> None:
        loop = self._loop
        assert loop is not None
        now = loop.time()
        lag = now - self._due
        if lag < 0:
            lag = 0.0
        if lag > self.max_lag:
            self.max_lag = lag
        if self.observe is not None:
            self.observe(lag)
        self._beat = time.monotonic()
        # Next beat one interval after *now*: a stall is counted once, not as a burst of late beats.
        self._due = now + self.interval
        self._handle = loop.call_at(self._due, self._tick)

    def _watch(self) -> None:
        period = self.interval
        while not self._stop.wait(period):
            beat = self._beat
            overdue = time.monotonic() - beat - self.interval
            if overdue < self.stall_after:
                continue
            where = self._sample()
            # Wait for the loop to run again, then report the whole stall once.
            while not self._stop.is_set() and self._beat == beat:
                self._stop.wait(period / 2)
            if self._stop.is_set():
                return
            stall = Stall(max(0.0, self._beat - beat - self.interval), where)
            self.stalls += 1
            log.warning("event loop stalled %.0f ms: %s", stall.seconds * 1000, stall.where)
            if self.on_stall is not None:
                self.on_stall(stall)

    def _sample(self) -> str:
        frame = sys._current_frames().get(self._loop_thread)
        if frame is None:
            return "in native code"
        where = describe_stack(frame)
        # The loop thread idling in its selector means the stall was native code that already ended.
        return where if "select" not in where.split(" < ")[0] else "in native code"
