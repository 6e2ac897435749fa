"""An asyncio loop whose clock jumps over idle time: a 30 s simulated call runs in a fraction of a second.

Everything in a text-mode simulation lives in one process and talks over local sockets: the simulated
Asterisk, the app, the AudioSocket player's frame clock, the runtime's timers. When nothing is ready to
run and no socket has data, a real loop would sleep until its next timer; this one moves its clock to that
timer instead. Because every timer, timeout and frame deadline reads ``loop.time()``, the program behaves
exactly as it would in real time, only without the waiting.

Time never jumps while a job runs in an executor thread (model inference, file reads, DNS): the loop then
waits for real, so a thread cannot be overtaken by a timeout it would have met in time. Data written to a
local socket is readable at once, so polling the selector with a zero timeout before each jump sees it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import selectors
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")

_THREAD_POLL = 0.002
"""How long to wait for real while an executor job runs (seconds)."""


class _WarpSelector(selectors.BaseSelector):
    """Delegates to a real selector, but turns an idle wait into a jump of the loop's clock."""

    def __init__(self, loop: VirtualTimeLoop, real: selectors.BaseSelector) -> None:
        self._loop = loop
        self._real = real

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._real.select(0)
        if ready or (timeout is not None and timeout <= 0):
            return ready
        if self._loop.jobs_in_flight:
            wait = _THREAD_POLL if timeout is None else min(timeout, _THREAD_POLL)
            return self._real.select(wait)
        if timeout is None:
            return self._real.select(None)  # no timer at all: only outside input can wake us
        self._loop.skip(timeout)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """``asyncio.Runner(loop_factory=VirtualTimeLoop)``: real I/O, virtual waiting."""

    def __init__(self) -> None:
        self._skew = 0.0
        self.jobs_in_flight = 0
        self.skipped = 0.0
        """Seconds of waiting the loop jumped over so far."""
        super().__init__(selectors.DefaultSelector())
        self._selector = _WarpSelector(self, self._selector)  # type: ignore[has-type]

    def time(self) -> float:
        return time.monotonic() + self._skew

    def skip(self, seconds: float) -> None:
        self._skew += seconds
        self.skipped += seconds

    def run_in_executor(  # type: ignore[override]
        self, executor: concurrent.futures.Executor | None, func: Callable[..., T], *args: Any
    ) -> asyncio.Future[T]:
        future = super().run_in_executor(executor, func, *args)
        self.jobs_in_flight += 1
        future.add_done_callback(self._job_done)
        return future

    def _job_done(self, _future: asyncio.Future[Any]) -> None:
        self.jobs_in_flight -= 1
