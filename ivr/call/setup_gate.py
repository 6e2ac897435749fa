"""How many ARI calls a process sets up at once, and the queue of the others.

A call's set-up is five or six REST requests and two events (answer, bridge, externalMedia, the media
socket, addChannel): about 2 ms of the event loop's time, spread over a dozen wake-ups. When a burst of
callers arrives faster than the loop can serve them (a campaign starts, a trunk comes back, another
instance drains its calls onto this one), starting every set-up at once shares the loop between all of
them: each takes longer the more there are, they pass their 5 s step deadline together, and Asterisk's
media connections wait unaccepted in the listen queue. The process then sets up almost nothing while
being fully busy (congestion collapse).

So set-ups take a slot first: at most ``limit`` run at once, each finishing in a few loop wake-ups, and
the rest wait in arrival order. A waiting caller is still ringing (the call is not answered yet); one
that waits longer than ``max_wait`` is refused with congestion, so a load balancer or the trunk can try
another instance.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field


class SetupQueueTimeout(Exception):
    """A call waited ``max_wait`` seconds for a set-up slot."""


@dataclass
class SetupGate:
    """At most ``limit`` set-ups at once, the others first come first served (``asyncio.Semaphore``
    wakes its waiters in order)."""

    limit: int = 32
    max_wait: float = 10.0
    on_waiting: Callable[[int], None] | None = None
    """Told how many callers wait whenever that changes (the metrics' gauge)."""
    running: int = 0
    waiting: int = 0
    _slots: asyncio.Semaphore = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError("at least one set-up at a time")
        self._slots = asyncio.Semaphore(self.limit)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[float]:
        """Hold a slot for the block; yields the seconds waited. ``SetupQueueTimeout`` after
        ``max_wait`` without one."""
        loop = asyncio.get_running_loop()
        asked = loop.time()
        if self._slots.locked():  # no slot free, or others already waiting for one
            self._waiting(+1)
            try:
                async with asyncio.timeout(self.max_wait):
                    await self._slots.acquire()
            except BaseException as exc:  # a timeout, or the call ended while it waited
                self._waiting(-1)
                if isinstance(exc, TimeoutError):
                    raise SetupQueueTimeout(
                        f"no set-up slot within {self.max_wait:g} s ({self.limit} set-ups at once, "
                        f"{self.waiting} others waiting)"
                    ) from None
                raise
            self._waiting(-1)
        else:
            await self._slots.acquire()
        self.running += 1
        try:
            yield loop.time() - asked
        finally:
            self.running -= 1
            self._slots.release()

    def _waiting(self, change: int) -> None:
        self.waiting += change
        if self.on_waiting is not None:
            self.on_waiting(self.waiting)
