"""What every part of the simulated ARI shares: its errors, the originate outcome, and :class:`SimCore`.

:class:`SimCore` is one simulated Asterisk's state (channels, bridges, the event log, its tasks) and the
primitives the REST routes and the Python API build on: emitting and awaiting events, looking channels
and bridges up, entering Stasis, leaving a bridge, hanging a channel up. The routes are mixins over it
(:mod:`ivr.sim.ari_channels`, :mod:`ivr.sim.ari_originate`, :mod:`ivr.sim.ari_external_media`,
:mod:`ivr.sim.ari_bridges`); :class:`~ivr.sim.ari_server.SimAsterisk` joins them behind the HTTP server.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ivr.audiosocket.clock import FrameClock
from ivr.sim.ari_state import SimBridge, SimChannel, ari_now, cause_text
from ivr.sim.event_sockets import EventSockets
from ivr.sim.media_leg import MediaConnector, tcp_media_connector
from ivr.sim.ws_media import LegFactory, silent_leg
from ivr.websocket.protocol import ControlForm

log = logging.getLogger("ivr.sim.ari")

ASTERISK_VERSION = "22.10.1"


class SimError(Exception):
    """Misuse of the simulator's Python API (e.g. a call into an application nobody listens to)."""


class AriRequestError(Exception):
    """Raised inside a handler to answer with an ARI error (status + ``{"message": ...}``)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class OriginateOutcome:
    """What happens to an originated channel.

    ``result``: ``answer``, ``busy`` (cause 17), ``noanswer`` (cause 19, after ``delay`` or the originate
    ``timeout``), ``congestion`` (34), or ``ring`` (rings until :meth:`SimAsterisk.answer_outbound`,
    :meth:`SimAsterisk.hangup` or the originate timeout).
    """

    result: str = "answer"
    delay: float | None = 0.02

    def __post_init__(self) -> None:
        if self.result not in ("answer", "busy", "noanswer", "congestion", "ring"):
            raise ValueError(f"unknown originate outcome {self.result!r}")


class SimCore:
    """The simulated Asterisk's state and shared primitives (see :class:`~ivr.sim.ari_server.SimAsterisk`)."""

    def __init__(
        self,
        *,
        username: str = "ivr",
        password: str = "secret",
        host: str = "127.0.0.1",
        port: int = 0,
        media_connector: MediaConnector | None = None,
        media_stasis_delay: float = 0.0,
        asterisk_id: str = "02:fc:00:00:00:01",
        websocket_legs: LegFactory | None = None,
    ) -> None:
        self.username = username
        self.password = password
        self.host = host
        self.port = port
        self.media_connector: MediaConnector = media_connector or tcp_media_connector
        self.media_stasis_delay = media_stasis_delay
        """Seconds between externalMedia's reply and the media channel's StasisStart (0: right away)."""
        self.websocket_legs: LegFactory = websocket_legs or silent_leg
        """Makes Asterisk's side of each WebSocket media connection (default: a silent caller)."""
        self.media_clock: FrameClock | None = None
        """The 20 ms chan_websocket timer of every WebSocket media leg (made on first use)."""
        self._ws_waiting: dict[str, tuple[SimChannel, ControlForm]] = {}
        """WebSocket media channels (and their control form) by connection id, until destroyed."""
        self.asterisk_id = asterisk_id
        self.version = ASTERISK_VERSION
        """What ``/asterisk/info`` reports (tests play older Asterisks)."""
        self.channels: dict[str, SimChannel] = {}
        """Live channels by id (destroyed ones are removed; see :attr:`destroyed`)."""
        self.destroyed: dict[str, SimChannel] = {}
        self.bridges: dict[str, SimBridge] = {}
        self.event_log: list[dict[str, Any]] = []
        """Every event sent to an application, in order."""
        self.requests: list[tuple[str, str]] = []
        """(method, path) of every REST request."""
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sockets = EventSockets(asterisk_id, self._spawn, self._notify)
        self._outcomes: list[tuple[str, OriginateOutcome]] = []
        self._dials: dict[str, asyncio.Future[str]] = {}
        self._leg_watchers: dict[str, asyncio.Task[None]] = {}
        self._ids = itertools.count(1)
        self._epoch = int(time.time())
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._waiters: set[asyncio.Future[None]] = set()

    # ------------------------------------------------------------------ tasks and ids

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=f"sim-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("simulator task %s failed", task.get_name(), exc_info=task.exception())

    def _new_id(self) -> str:
        return f"{self._epoch}.{next(self._ids)}"

    # ------------------------------------------------------------------ events

    @property
    def connected_apps(self) -> set[str]:
        """Applications with a connected events WebSocket."""
        return self._sockets.apps

    def _emit(self, app: str | None, type_: str, **fields: Any) -> None:
        if app is None:
            return
        event: dict[str, Any] = {"type": type_, "timestamp": ari_now(), **fields}
        event["asterisk_id"] = self.asterisk_id
        event["application"] = app
        if self._sockets.send(app, event):  # nobody listening: Asterisk drops events of an inactive app
            self.event_log.append(event)
            self._notify()

    def _notify(self) -> None:
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until ``predicate()`` (re-checked after every event and state change) is true."""
        async with asyncio.timeout(timeout):
            while not predicate():
                waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._waiters.add(waiter)
                await waiter

    async def wait_for_event(
        self, type_: str, channel_id: str | None = None, timeout: float = 5.0
    ) -> dict[str, Any]:
        """Wait until an event of ``type_`` (for ``channel_id`` if given) has been sent; return it."""
        found: list[dict[str, Any]] = []

        def match() -> bool:
            for event in self.event_log:
                chan = event.get("channel") or event.get("peer") or {}
                if event["type"] == type_ and (channel_id is None or chan.get("id") == channel_id):
                    found.append(event)
                    return True
            return False

        await self.wait_for(match, timeout)
        return found[0]

    async def kill_event_sockets(self, *, abort: bool = False) -> None:
        """Drop every events WebSocket (as an Asterisk restart would); ``abort`` resets the TCP connection."""
        await self._sockets.kill(abort=abort)

    def freeze_event_sockets(self) -> None:
        """Make every events WebSocket a dead peer: nothing is read (no pongs) and nothing is sent."""
        self._sockets.freeze()

    # ------------------------------------------------------------------ lookups and request bodies

    @staticmethod
    async def _body_variables(request: web.Request) -> dict[str, str]:
        if not request.can_read_body:
            return {}
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError) as exc:
            raise AriRequestError(400, "Bad request body") from exc
        if not isinstance(body, Mapping):
            return {}
        variables = body.get("variables", {})
        if not isinstance(variables, Mapping):
            raise AriRequestError(400, "Bad request body")
        return {str(k): str(v) for k, v in variables.items()}

    @staticmethod
    def _no_content() -> web.Response:
        return web.Response(status=204)

    def _channel(self, channel_id: str) -> SimChannel:
        chan = self.channels.get(channel_id)
        if chan is None:
            raise AriRequestError(404, "Channel not found")
        return chan

    def _control(self, channel_id: str) -> SimChannel:
        """Like ARI's find_control: 404 if the channel does not exist, 409 if it is not in Stasis."""
        chan = self._channel(channel_id)
        if not chan.in_stasis:
            raise AriRequestError(409, "Channel not in Stasis application")
        return chan

    def _bridge(self, bridge_id: str) -> SimBridge:
        bridge = self.bridges.get(bridge_id)
        if bridge is None:
            raise AriRequestError(404, "Bridge not found")
        return bridge

    # ------------------------------------------------------------------ Stasis, bridges, hangup

    def _enter_stasis(self, chan: SimChannel) -> None:
        assert chan.app is not None
        chan.app_name = "Stasis"
        chan.app_data = ",".join([chan.app, *chan.args])
        self._emit(chan.app, "ChannelVarset", variable="STASISSTATUS", value="", channel=chan.to_json())
        chan.in_stasis = True
        self._emit(chan.app, "StasisStart", args=list(chan.args), channel=chan.to_json())

    def _leave_bridge(self, chan: SimChannel) -> None:
        if chan.bridge_id is None:
            return
        bridge = self.bridges.get(chan.bridge_id)
        chan.bridge_id = None
        if bridge is None or chan.id not in bridge.channels:
            return
        bridge.channels.remove(chan.id)
        self._emit(chan.app, "ChannelLeftBridge", bridge=bridge.to_json(), channel=chan.to_json())

    async def _destroy(
        self, chan: SimChannel, cause: int, *, hangup_request: bool, soft: bool = False
    ) -> None:
        """Hang a channel up: [ChannelHangupRequest], ChannelLeftBridge, StasisEnd, ChannelDestroyed.

        A caller that entered the application through the dialplan (``Stasis()``) is only subscribed
        while it is in Stasis: a real Asterisk sends no ``ChannelDestroyed`` after its ``StasisEnd``.
        Channels the application created (originate, externalMedia) get it. ``soft``: the application
        hung it up (``DELETE``), as measured on Asterisk 22.10.1.
        """
        if chan.destroyed:
            return
        chan.destroyed = True
        chan.hangup_cause = cause
        dial = self._dials.pop(chan.id, None)
        if dial is not None and not dial.done():
            dial.set_result("cancel")
            self._emit(
                chan.app,
                "Dial",
                dialstatus="CANCEL",
                forward="",
                dialstring=chan.dialstring,
                peer=chan.to_json(),
            )
        if hangup_request and soft:
            # DELETE /channels/{id}: Asterisk soft-hangs the channel up; the event's "cause" is then the
            # soft-hangup flag (AST_SOFTHANGUP_EXPLICIT, 32), not the Q.850 cause (ChannelDestroyed has that).
            self._emit(chan.app, "ChannelHangupRequest", cause=32, soft=True, channel=chan.to_json())
        elif hangup_request:
            self._emit(chan.app, "ChannelHangupRequest", cause=cause, channel=chan.to_json())
        self._leave_bridge(chan)
        if chan.in_stasis:
            chan.in_stasis = False
            self._emit(chan.app, "StasisEnd", channel=chan.to_json())
            chan.app_name, chan.app_data = "AppDial2", "(Outgoing Line)"
            if chan.kind == "caller":
                chan.app_name, chan.app_data = "", ""
                chan.app = None  # Stasis() is over: the application hears no more of this channel
        self._emit(
            chan.app, "ChannelDestroyed", cause=cause, cause_txt=cause_text(cause), channel=chan.to_json()
        )
        self.channels.pop(chan.id, None)
        self.destroyed[chan.id] = chan
        self._ws_waiting.pop(chan.variables.get("MEDIA_WEBSOCKET_CONNECTION_ID", ""), None)
        if chan.media_leg is not None:
            await self._close_leg(chan)
        self._notify()

    async def _close_leg(self, chan: SimChannel) -> None:
        watcher = self._leg_watchers.pop(chan.id, None)
        if watcher is not None and watcher is not asyncio.current_task():
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        leg = chan.media_leg
        if leg is not None:
            await leg.close()


def int_param(query: Mapping[str, str], name: str, default: int) -> int:
    """The integer query parameter ``name`` (``default`` if absent or empty; 400 if not a number)."""
    text = query.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError as exc:
        raise AriRequestError(400, f"Invalid value for {name}") from exc
