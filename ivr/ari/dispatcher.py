"""Route ARI events to calls: one queue and one task per call, so a slow call never delays another.

The events WebSocket delivers every event of the application in one ordered stream. The
:class:`EventDispatcher` sorts them by channel (and bridge) id into :class:`CallRoute` s; each route has
its own queue and task that awaits the call's handler for one event at a time (a call sees its events in
order). A caller's ``StasisStart`` on a channel nobody routes yet asks ``new_call`` for a handler. A call
binds the other ids it creates (its media channel, its bridge, an outbound leg) to its route *before*
the REST request that creates them, because the events can arrive before the reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable

from ivr.ari.models import BridgeEvent, ChannelDestroyed, Event, StasisStart

log = logging.getLogger("ivr.ari.dispatcher")

EventHandler = Callable[[Event], Awaitable[None]]
NewCallFactory = Callable[[StasisStart], EventHandler | None]

_CLOSE = object()


def bridge_key(bridge_id: str) -> str:
    return f"bridge:{bridge_id}"


class CallRoute:
    """One call's ordered event queue and the task that feeds it to the handler."""

    def __init__(self, name: str, handler: EventHandler) -> None:
        self.name = name
        self.keys: set[str] = set()
        self._handler = handler
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"call-events-{name}")

    @property
    def task(self) -> asyncio.Task[None]:
        return self._task

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def put(self, event: Event) -> None:
        self._queue.put_nowait(event)

    def finish(self) -> None:
        """Let the task end after the events already queued have been handled."""
        self._queue.put_nowait(_CLOSE)

    async def cancel(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        while True:
            item = await self._queue.get()
            if item is _CLOSE:
                return
            assert isinstance(item, Event)
            try:
                await self._handler(item)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("call %s: handler failed on %s", self.name, item.type)


class EventDispatcher:
    """Sorts events into per-call routes. ``dispatch`` never blocks: use it as the stream's ``on_event``.

    ``new_call(event)`` is called (synchronously) for a ``StasisStart`` on an unrouted channel and returns
    the call's handler, or ``None`` to leave it unrouted (e.g. a media channel nobody claimed).
    Events nobody routes go to ``unrouted`` (in its own task as well), or are dropped with a debug log.
    When a routed channel is destroyed its id is unbound; a route with no ids left ends after draining.
    """

    def __init__(self, new_call: NewCallFactory, *, unrouted: EventHandler | None = None) -> None:
        self._new_call = new_call
        self._routes: dict[str, CallRoute] = {}
        self._all: set[CallRoute] = set()
        self._unrouted = CallRoute("unrouted", unrouted) if unrouted is not None else None

    @property
    def routes(self) -> dict[str, CallRoute]:
        """Routing table: channel id (or ``bridge:ID``) -> route (read-only use)."""
        return self._routes

    def open(self, channel_id: str, handler: EventHandler) -> CallRoute:
        """Create a route for ``channel_id`` (e.g. before originating an outbound call with that id)."""
        if channel_id in self._routes:
            raise ValueError(f"channel {channel_id} is already routed")
        route = CallRoute(channel_id, handler)
        self._all.add(route)
        route.task.add_done_callback(functools.partial(self._forget, route))
        self._bind_key(channel_id, route)
        return route

    def bind(self, channel_id: str, to: str) -> None:
        """Route the events of ``channel_id`` to the route of channel ``to``."""
        self._bind_key(channel_id, self._route_of(to))

    def bind_bridge(self, bridge_id: str, to: str) -> None:
        """Route bridge-only events (``BridgeDestroyed``...) of ``bridge_id`` to the route of ``to``."""
        self._bind_key(bridge_key(bridge_id), self._route_of(to))

    def unbind(self, key: str) -> None:
        route = self._routes.pop(key, None)
        if route is not None:
            route.keys.discard(key)
            if not route.keys:
                route.finish()

    def release(self, channel_id: str) -> None:
        """Unbind every id of the route of ``channel_id``; its task ends after the queued events."""
        route = self._routes.get(channel_id)
        if route is not None:
            for key in list(route.keys):
                self.unbind(key)

    def dispatch(self, event: Event) -> None:
        targets: list[CallRoute] = []
        keys = list(event.channel_ids)
        if isinstance(event, BridgeEvent):
            keys.append(bridge_key(event.bridge.id))
        for key in keys:
            route = self._routes.get(key)
            if route is not None and route not in targets:
                targets.append(route)
        if not targets and isinstance(event, StasisStart):
            handler = self._new_call(event)
            if handler is not None:
                targets.append(self.open(event.channel.id, handler))
        for route in targets:
            route.put(event)
        if not targets:
            if self._unrouted is not None:
                self._unrouted.put(event)
            else:
                log.debug("unrouted %s for %s", event.type, keys)
        if isinstance(event, ChannelDestroyed):
            self.unbind(event.channel.id)

    def stale(self, live_channel_ids: Iterable[str]) -> list[str]:
        """Routed channel ids that are not in ``live_channel_ids`` (e.g. ``GET /channels`` after a reconnect).

        Events are lost while the WebSocket is down; a call whose channel vanished meanwhile never gets
        its ChannelDestroyed, so the application cleans those calls up itself.
        """
        live = set(live_channel_ids)
        return sorted(k for k in self._routes if not k.startswith("bridge:") and k not in live)

    async def close(self) -> None:
        """Cancel every route task (calls must have cleaned up or be abandoned)."""
        routes = list(self._all)
        if self._unrouted is not None:
            routes.append(self._unrouted)
        self._routes.clear()
        for route in routes:
            await route.cancel()
        self._all.clear()

    def _route_of(self, channel_id: str) -> CallRoute:
        route = self._routes.get(channel_id)
        if route is None:
            raise KeyError(f"channel {channel_id} has no route")
        return route

    def _bind_key(self, key: str, route: CallRoute) -> None:
        old = self._routes.get(key)
        if old is not None and old is not route:
            raise ValueError(f"{key} is already routed to call {old.name}")
        self._routes[key] = route
        route.keys.add(key)

    def _forget(self, route: CallRoute, _task: object = None) -> None:
        self._all.discard(route)
        for key in list(route.keys):
            if self._routes.get(key) is route:
                del self._routes[key]
        route.keys.clear()
