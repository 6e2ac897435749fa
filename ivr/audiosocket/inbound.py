"""The bounded queue between a socket and whoever consumes a session's events.

Audio is perishable: when the consumer falls behind, the oldest audio is dropped (and counted) so memory
stays bounded and the consumer catches up with the present. Control events (DTMF, hangup, errors, the
final close) are never dropped.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from ivr.audiosocket.protocol import Audio, Dtmf, Error, Hangup


@dataclass(frozen=True, slots=True)
class Closed:
    """The session is over; always the last event. ``reason`` says why, for logs."""

    reason: str


SessionEvent = Audio | Dtmf | Hangup | Error | Closed


class InboundQueue:
    __slots__ = ("_audio", "_closed", "_items", "_waiter", "dropped_audio", "max_audio")

    def __init__(self, max_audio: int) -> None:
        if max_audio < 1:
            raise ValueError("max_audio must be at least 1")
        self.max_audio = max_audio
        self._items: deque[SessionEvent] = deque()
        self._audio = 0
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self.dropped_audio = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, event: SessionEvent) -> None:
        if self._closed:
            return
        items = self._items
        if type(event) is Audio:
            if self._audio >= self.max_audio:
                self._drop_oldest_audio()
            self._audio += 1
        elif type(event) is Closed:
            self._closed = True
        items.append(event)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _drop_oldest_audio(self) -> None:
        items = self._items
        for i, item in enumerate(items):
            if type(item) is Audio:
                del items[i]
                self._audio -= 1
                self.dropped_audio += 1
                return

    async def get(self) -> SessionEvent | None:
        """The next event, or None once the final :class:`Closed` has been taken."""
        while not self._items:
            if self._closed:
                return None
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            await waiter
        event = self._items.popleft()
        if type(event) is Audio:
            self._audio -= 1
        return event

    def get_nowait(self) -> SessionEvent | None:
        if not self._items:
            return None
        event = self._items.popleft()
        if type(event) is Audio:
            self._audio -= 1
        return event
