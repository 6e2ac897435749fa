"""Time sources and the shared 20 ms frame clock.

One :class:`FrameClock` paces every session of a server. It is a timer wheel: the 20 ms period is cut
into slots (1 ms by default) and each session keeps the phase of the slot it joined, so the writes of
hundreds of calls are spread over the period instead of piling up on one tick (the calls written last in
a single shared tick are late by the length of the whole write loop). Deadlines are absolute
(``start + n * period``): a late wake-up never shifts later frames.

Timing goes through the small :class:`Clock` protocol so tests drive it in virtual time with
:class:`ManualClock` instead of sleeping.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from collections.abc import Callable
from typing import Protocol

from ivr.audiosocket.stats import LatencyHistogram


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """Monotonic time plus absolute-time callbacks (what ``asyncio`` loops provide)."""

    def now(self) -> float: ...

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle: ...


class LoopClock:
    """The running asyncio loop's monotonic clock."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop or asyncio.get_running_loop()

    def now(self) -> float:
        return self._loop.time()

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle:
        return self._loop.call_at(when, callback)


class _ManualHandle:
    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """Virtual time for tests and simulations: nothing happens until :meth:`advance` is called.

    ``wake_delay`` returns how late each callback fires (seconds), which lets tests inject the
    scheduling jitter of a busy machine and check that deadlines still hold.
    """

    def __init__(self, start: float = 1000.0, wake_delay: Callable[[], float] | None = None) -> None:
        self._now = start
        self._heap: list[tuple[float, int, _ManualHandle, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._wake_delay = wake_delay

    def now(self) -> float:
        return self._now

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle:
        handle = _ManualHandle()
        heapq.heappush(self._heap, (when, next(self._seq), handle, callback))
        return handle

    def advance(self, seconds: float) -> int:
        """Move time forward, firing due callbacks in order; returns how many fired."""
        target = self._now + seconds
        fired = 0
        while self._heap and self._heap[0][0] <= target:
            when, _, handle, callback = heapq.heappop(self._heap)
            if handle.cancelled:
                continue
            late = self._wake_delay() if self._wake_delay else 0.0
            self._now = max(self._now, when + late)
            callback()
            fired += 1
        self._now = max(self._now, target)
        return fired


class Ticker(Protocol):
    """A member of the frame clock: called once per period with that frame's nominal deadline."""

    def tick(self, deadline: float) -> None: ...


class FrameClock:
    """A timer wheel that calls each member once per ``period``, at the member's own phase.

    A member joins the least loaded of the next ``spread`` slots, so its first tick comes within a few
    milliseconds. When the event loop stalls for more than a period, up to ``max_catchup`` frames are
    sent at once (keeping audio in step with time); beyond that whole periods are skipped and counted,
    which delays the remaining audio rather than bursting seconds of it.
    """

    def __init__(
        self,
        clock: Clock,
        *,
        period: float = 0.020,
        slots: int = 20,
        spread: int = 4,
        max_catchup: int = 3,
    ) -> None:
        if slots < 1 or period <= 0 or spread < 1 or max_catchup < 1:
            raise ValueError("period, slots, spread and max_catchup must be positive")
        self.clock = clock
        self.period = period
        self.slots = slots
        self.spread = min(spread, slots)
        self.max_catchup = max_catchup
        self._width = period / slots
        self._epoch = clock.now()
        self._members: list[list[Ticker]] = [[] for _ in range(slots)]
        self._slot_of: dict[int, int] = {}
        self._next: list[float] = [0.0] * slots
        self._handles: list[TimerHandle | None] = [None] * slots
        self._fire_cbs = [self._make_fire(k) for k in range(slots)]
        self.wakeup_lateness = LatencyHistogram()
        """How late each slot's timer fired against its deadline (the loop's own scheduling delay)."""
        self.skipped_periods = 0

    def __len__(self) -> int:
        return len(self._slot_of)

    def add(self, member: Ticker) -> None:
        key = id(member)
        if key in self._slot_of:
            return
        first = math.ceil((self.clock.now() - self._epoch) / self._width)
        best = min(range(first, first + self.spread), key=lambda i: len(self._members[i % self.slots]))
        k = best % self.slots
        self._members[k].append(member)
        self._slot_of[key] = k
        if self._handles[k] is None:
            self._next[k] = self._epoch + best * self._width
            self._handles[k] = self.clock.call_at(self._next[k], self._fire_cbs[k])

    def remove(self, member: Ticker) -> None:
        k = self._slot_of.pop(id(member), None)
        if k is None:
            return
        self._members[k].remove(member)
        handle = self._handles[k]
        if not self._members[k] and handle is not None:
            handle.cancel()
            self._handles[k] = None

    def close(self) -> None:
        for k, handle in enumerate(self._handles):
            if handle is not None:
                handle.cancel()
                self._handles[k] = None
        for members in self._members:
            members.clear()
        self._slot_of.clear()

    def _make_fire(self, k: int) -> Callable[[], None]:
        return lambda: self._fire(k)

    def _fire(self, k: int) -> None:
        period = self.period
        deadline = self._next[k]
        late = self.clock.now() - deadline
        self.wakeup_lateness.record(late)
        due = 1
        if late >= period:
            due += int(late // period)
            if due > self.max_catchup:
                skip = due - self.max_catchup
                self.skipped_periods += skip
                deadline += skip * period
                due = self.max_catchup
        members = self._members[k]
        for i in range(due):
            for member in tuple(members):
                member.tick(deadline + i * period)
        if members:
            self._next[k] = deadline + due * period
            self._handles[k] = self.clock.call_at(self._next[k], self._fire_cbs[k])
        else:
            self._handles[k] = None
