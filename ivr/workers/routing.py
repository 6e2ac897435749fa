"""Which worker owns an ARI event: the supervisor's routing table (pure, no I/O).

Asterisk delivers one ordered event stream per application, so one process (the supervisor) reads it and
hands each call to a worker. Routing has two sources of truth, so that no event can race its binding:

* the caller's channel id is bound to a worker when its ``StasisStart`` arrives (the least-loaded
  worker takes the call);
* every id a worker creates itself (media channel, bridge, agent leg) starts with that worker's tag,
  ``ivr-w<N>-``, so events about them route by name before any message could tell the supervisor.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from ivr.ari.models import BridgeEvent, ChannelDestroyed, Event, StasisStart
from ivr.call.transfer import TRANSFER_MARKER

_TAG = re.compile(r"ivr-w(\d+)-")


def worker_tag(worker: int) -> str:
    """Prefix of every ARI id worker ``worker`` creates."""
    return f"ivr-w{worker}-"


def tagged_worker(object_id: str) -> int | None:
    match = _TAG.match(object_id)
    return int(match.group(1)) if match else None


@dataclass(frozen=True, slots=True)
class Route:
    worker: int | None
    """Who gets the event; None: nobody (the supervisor handles it, e.g. an unanswered originate)."""
    new_call: bool = False
    """The event starts a call on ``worker`` (a caller's StasisStart)."""


@dataclass
class CallRouter:
    """Assigns callers to workers and remembers which worker owns which caller."""

    workers: int
    callers: dict[str, int] = field(default_factory=dict)
    """Caller channel id -> worker."""
    _available: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError("at least one worker")
        self._available = set(range(self.workers))

    def set_available(self, worker: int, available: bool) -> None:
        """A worker that is (re)starting takes no new calls."""
        if available:
            self._available.add(worker)
        else:
            self._available.discard(worker)

    def load(self, worker: int) -> int:
        return sum(1 for w in self.callers.values() if w == worker)

    def calls_of(self, worker: int) -> list[str]:
        return [c for c, w in self.callers.items() if w == worker]

    def route(self, event: Event) -> Route:
        ids: list[str] = list(event.channel_ids)
        if isinstance(event, BridgeEvent):
            ids.append(event.bridge.id)
        owner: int | None = None
        for object_id in ids:
            owner = self.callers.get(object_id)
            if owner is None:
                owner = tagged_worker(object_id)
            if owner is not None:
                break
        new_call = False
        if owner is None and isinstance(event, StasisStart) and self.is_caller(event):
            owner = self._pick()
            if owner is not None:
                self.callers[event.channel.id] = owner
                new_call = True
        if isinstance(event, ChannelDestroyed):
            self.callers.pop(event.channel.id, None)
        return Route(owner, new_call)

    def release(self, caller_id: str) -> None:
        """The worker finished with this caller."""
        self.callers.pop(caller_id, None)

    def lose(self, worker: int) -> list[str]:
        """A worker died: forget its callers and return them (their calls need records and cleanup)."""
        lost = self.calls_of(worker)
        for caller in lost:
            del self.callers[caller]
        return lost

    def forget_all(self, caller_ids: Iterable[str]) -> None:
        for caller in caller_ids:
            self.callers.pop(caller, None)

    @staticmethod
    def is_caller(event: StasisStart) -> bool:
        """A new caller, not a media channel or a leg some worker created."""
        if event.channel.is_audiosocket or tagged_worker(event.channel.id) is not None:
            return False  # a media channel or a leg some worker created
        return not (event.args and event.args[0] == TRANSFER_MARKER)

    def _pick(self) -> int | None:
        if not self._available:
            return None
        return min(sorted(self._available), key=self.load)
