"""Per-call outbound ARI WebSockets: ``ivr`` as the server Asterisk connects to, once for every call.

With an ``ari.conf`` ``outbound_websocket`` on a ``websocket_client.conf`` entry of ``connection_type =
per_call_config`` (Asterisk 20.15 / 21.10 / 22.5 and later), ``Stasis(ivr)`` on a channel makes Asterisk
open a new WebSocket to us for that call alone. What Asterisk 22.10.1 does (read from
``res/ari/ari_websockets.c``, ``apps/app_stasis.c``, ``res/res_websocket_client.c``; measured in
``tests/ari/test_percall_asterisk.py``):

* It sends ``GET <path>`` with ``Sec-WebSocket-Protocol: ari`` and HTTP basic auth (the ``username`` /
  ``password`` of its ``websocket_client.conf`` entry), and no hint of the call in the URL.
* It registers a dynamic application ``<app>:<channel name>`` (e.g. ``ivr:PJSIP/alice-00000001``): the
  first message is ``ApplicationRegistered`` for it, then, about 0.5 s later (Asterisk polls for the
  connection every 500 ms), the caller's ``StasisStart``. Everything the call does (its media channel,
  bridge, agent leg) must name *that* application, and its events come over the same socket.
* REST requests and their replies travel over the socket (:mod:`ivr.ari.rest_messages`).
* It closes the socket (1000) about 3.5 s after the caller's ``StasisEnd``. Whatever the call still owns
  then (a media channel, a bridge) can no longer be reached over it: clean up before.
* If the socket drops while the caller is still in Stasis, Asterisk reconnects at once (through a load
  balancer: possibly to another instance). The new socket gets ``ApplicationRegistered`` again but no
  ``StasisStart``: :class:`PerCallConnection` reports it as ``resumed`` with the caller's channel.
* A refused or failed connect is retried ``reconnect_attempts`` times; then ``Stasis()`` returns with
  ``STASISSTATUS=FAILED`` and the dialplan goes on (README: "Per-call ARI connections" has the timings).

Refused handshakes (wrong path, not a WebSocket, no ``ari`` subprotocol, bad credentials, draining or
full) get a plain HTTP error and one warning line per peer and reason (repeats within a minute are
counted, not logged: Asterisk retries each refused call several times). Nothing else is disturbed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web

from ivr.ari.errors import AriError, NotFound
from ivr.ari.models import Channel, Event, StasisEnd, StasisStart, parse_event
from ivr.ari.rest_messages import MessageError, RestResponse, decode_message
from ivr.ari.ws_client import WsAriClient

log = logging.getLogger("ivr.ari.percall")

ARI_PROTOCOL = "ari"
DEFAULT_PATH = "/ari"
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
"""One message from Asterisk; the largest real ones are ``GET /channels`` replies on a busy system."""
RESUME_GRACE = 0.5
"""How long a StasisStart may still be in flight when the caller already shows in the application."""

CallHandler = Callable[["PerCallConnection"], Awaitable[None]]
_END = None


class PerCallConnection:
    """One call's ARI WebSocket: its events in order, REST over the same socket (``ari``), the close.

    Handed to the server's call handler once it is known which call it carries: after the caller's
    ``StasisStart`` (``start``), or, for a socket Asterisk reopened mid-call, once the caller was found
    in the application (``resumed``; ``start`` is ``None``). ``events()`` yields every event from then
    on (the ``StasisStart`` first) except ``ApplicationRegistered`` / ``ApplicationUnregistered``, and
    ends when the socket closes.
    """

    def __init__(
        self,
        ws: web.WebSocketResponse,
        peer: str,
        *,
        apps: Iterable[str] = (),
        request_timeout: float = 10.0,
        name: str = "percall",
    ) -> None:
        self.peer = peer
        self.ari = WsAriClient(ws.send_str, timeout=request_timeout, name=name)
        self.app = ""
        """The dynamic application of this call, ``<app>:<channel name>``: name it in ``externalMedia``
        and ``originate`` so those channels' events come over this socket."""
        self.base_app = ""
        self.channel_name = ""
        self.start: StasisStart | None = None
        self.channel: Channel | None = None
        self.resumed = False
        self.application: Mapping[str, Any] = {}
        """Asterisk's ``GET /applications/{app}`` when the call was identified. For a ``resumed`` call,
        ``channel_ids`` are the channels in its app (caller, media, agent leg) and ``bridge_ids`` the
        bridges they are in (measured: a bridge no channel is in is not listed)."""
        self.left_stasis = False
        """The caller's ``StasisEnd`` came: Asterisk closes the socket about 3.5 s later."""
        self.close_code: int | None = None
        self._apps = tuple(apps)
        self._ws = ws
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._registered = asyncio.Event()
        self._started = asyncio.Event()
        self._left = asyncio.Event()
        self._closed = asyncio.Event()
        self._iterating = False

    def __repr__(self) -> str:
        return f"PerCallConnection({self.app or '?'!r} from {self.peer})"

    @property
    def channel_id(self) -> str:
        return self.channel.id if self.channel is not None else ""

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def wait_left_stasis(self) -> None:
        """Until the caller's ``StasisEnd`` came (or the socket closed)."""
        await _first(self._left.wait(), self._closed.wait())

    async def events(self) -> AsyncIterator[Event]:
        """This call's events in the order Asterisk sent them; ends when the socket closes (one reader)."""
        if self._iterating:
            raise RuntimeError("events() of a per-call connection has one reader")
        self._iterating = True
        while (event := await self._queue.get()) is not _END:
            yield event

    async def close(self, code: int = aiohttp.WSCloseCode.GOING_AWAY) -> None:
        """Close from our side. While the caller is in Stasis Asterisk reconnects (maybe elsewhere)."""
        await self._ws.close(code=code)

    # -- reading --------------------------------------------------------------------------------

    async def read(self) -> None:
        """Read the socket until it closes; malformed input closes this one connection (one log line)."""
        ws = self._ws
        try:
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.TEXT:
                    problem = self._on_text(msg.data)
                elif msg.type is aiohttp.WSMsgType.BINARY:
                    problem = "a binary frame (ARI sends text)"
                else:  # ERROR: too big, protocol violation, ...
                    problem = f"{type(ws.exception()).__name__}: {ws.exception()}"
                if problem:
                    log.warning("per-call ARI %s: closing the connection: %s", self._who(), problem)
                    await ws.close(code=aiohttp.WSCloseCode.UNSUPPORTED_DATA)
                    break
        finally:
            self.close_code = ws.close_code
            self.ari.close(f"the per-call ARI connection closed (code {ws.close_code})")
            self._queue.put_nowait(_END)
            self._closed.set()

    def _on_text(self, text: str) -> str:
        try:
            message = decode_message(text)
        except MessageError as exc:
            return str(exc)
        if isinstance(message, RestResponse):
            self.ari.feed(message)
            return ""
        kind = message["type"]
        if kind == "ApplicationRegistered":
            return self._on_registered(message)
        if kind == "ApplicationUnregistered":
            log.debug("per-call ARI %s: application unregistered", self._who())
            return ""
        if not self.app and isinstance(message.get("application"), str):
            # The call's app outlived its last socket (Stasis() ran again for the same channel): Asterisk
            # sends no ApplicationRegistered, only what it queued meanwhile, then the StasisStart.
            problem = self._on_registered(message)
            if problem:
                return problem
        event = parse_event(message)
        if isinstance(event, StasisStart) and self.start is None and not self.resumed:
            if event.channel.name == self.channel_name:
                stale = self._queue.qsize()
                if stale:  # queued by Asterisk for the app's previous socket: not this call's
                    log.debug("per-call ARI %s: dropped %d events of an earlier socket", self._who(), stale)
                    self._queue = asyncio.Queue()
                self.start, self.channel = event, event.channel
                self._started.set()
        elif isinstance(event, StasisEnd) and event.channel.id == self.channel_id:
            self.left_stasis = True
            self._left.set()
        self._queue.put_nowait(event)
        return ""

    def _on_registered(self, message: Mapping[str, object]) -> str:
        app = message.get("application")
        if not isinstance(app, str) or not app:
            return "ApplicationRegistered without an application"
        if self.app and app != self.app:
            return f"a second application {app[:80]!r} on one per-call connection"
        base = next((a for a in self._apps if app.startswith(a + ":")), app.partition(":")[0])
        self.app, self.base_app, self.channel_name = app, base, app[len(base) + 1 :]
        self._registered.set()
        return ""

    # -- which call -----------------------------------------------------------------------------

    async def identify(self, timeout: float) -> bool:
        """Wait until it is known which call this socket carries (new or resumed); False if never."""
        try:
            async with asyncio.timeout(timeout):
                await _first(self._registered.wait(), self._started.wait(), self._closed.wait())
                if self._started.is_set() or self.closed:
                    return self._started.is_set()
                caller = await self._caller_in_application()
                if caller is None:
                    await _first(self._started.wait(), self._closed.wait())
                    return self._started.is_set()
                with contextlib.suppress(TimeoutError):  # a new call's StasisStart may still be in flight
                    async with asyncio.timeout(RESUME_GRACE):
                        await _first(self._started.wait(), self._closed.wait())
                if self._started.is_set() or self.closed:
                    return self._started.is_set()
                self.channel, self.resumed = caller, True
                return True
        except TimeoutError:
            return False
        except AriError as exc:
            log.warning("per-call ARI %s: cannot look the call up: %s", self._who(), exc)
            return False

    async def _caller_in_application(self) -> Channel | None:
        """The caller's channel if it is in this socket's application already (a reopened socket)."""
        info = await self.ari.request("GET", f"/applications/{quote(self.app, safe='')}")
        self.application = info if isinstance(info, Mapping) else {}
        ids = self.application.get("channel_ids")
        for channel_id in ids if isinstance(ids, list) else []:
            try:
                channel = await self.ari.get_channel(str(channel_id))
            except NotFound:
                continue  # listed, and gone since (the previous owner's media channel being hung up)
            if channel.name == self.channel_name:
                return channel
        return None

    def _who(self) -> str:
        return f"{self.app or 'unregistered'} from {self.peer}"


async def _first(*waits: Awaitable[object]) -> None:
    """Return when the first of ``waits`` is done; the others are cancelled."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
