"""How one ARI call reaches Asterisk: its REST client, the Stasis app it names, the route of its events.

One call code (:class:`~ivr.call.ari_call.AriCall`, :class:`~ivr.call.transfer.EndpointTransfer`) serves
both ARI deployments; what differs is this link:

* **persistent** (:class:`SharedLink`): every call shares the process's REST client and its one events
  socket, and a dispatcher routes each event to its call by id. So every id a call creates (media
  channel, bridge, agent leg) is bound to the call *before* the request that creates it: Asterisk may
  send the new object's events before its reply.
* **per-call** (:class:`ConnectionLink`): Asterisk opened a WebSocket for this call alone. The call's
  REST runs over it, every event on it is this call's (binding is nothing to do), and whatever the call
  creates must name the socket's dynamic application ``<app>:<channel name>``, so that its events come
  over the same socket.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from ivr.ari.client import AriResources
from ivr.ari.dispatcher import EventDispatcher, bridge_key
from ivr.ari.percall import PerCallConnection


class CallLink(Protocol):
    @property
    def ari(self) -> AriResources:
        """Where this call's REST requests go."""

    @property
    def app(self) -> str:
        """The Stasis application to name in ``externalMedia`` and ``originate``."""

    def bind(self, object_id: str) -> None:
        """Events about ``object_id`` (a channel the call is about to create) reach this call."""

    def bind_bridge(self, bridge_id: str) -> None:
        """Events about the bridge ``bridge_id`` reach this call."""

    def release(self, channel_ids: Iterable[str], bridge_ids: Iterable[str]) -> None:
        """The call is over: forget its routes (its event task ends once its queue is empty)."""


@dataclass(frozen=True, slots=True)
class SharedLink:
    """Persistent mode: the process's REST client and events socket, routed by the dispatcher."""

    ari: AriResources
    app: str
    dispatcher: EventDispatcher
    caller_id: str

    def bind(self, object_id: str) -> None:
        self.dispatcher.bind(object_id, self.caller_id)

    def bind_bridge(self, bridge_id: str) -> None:
        self.dispatcher.bind_bridge(bridge_id, self.caller_id)

    def release(self, channel_ids: Iterable[str], bridge_ids: Iterable[str]) -> None:
        for key in [*channel_ids, *(bridge_key(b) for b in bridge_ids)]:
            self.dispatcher.unbind(key)


@dataclass(frozen=True, slots=True)
class ConnectionLink:
    """Per-call mode: the call's own socket (REST over it, its events only)."""

    connection: PerCallConnection

    @property
    def ari(self) -> AriResources:
        return self.connection.ari

    @property
    def app(self) -> str:
        return self.connection.app

    def bind(self, object_id: str) -> None:
        return None

    def bind_bridge(self, bridge_id: str) -> None:
        return None

    def release(self, channel_ids: Iterable[str], bridge_ids: Iterable[str]) -> None:
        return None
