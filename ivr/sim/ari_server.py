"""A simulated Asterisk 22 ARI on aiohttp.web: REST under ``/ari``, the events WebSocket, and a Python API
for tests and simulated callers.

It behaves like the real thing where an IVR can tell the difference (see ``asterisk-wire.md``):
basic auth (401 with Asterisk's body), the error statuses and messages of ARI, event JSON with the keys of
a real capture, one events connection per application (the older one gets ``ApplicationReplaced`` and is
closed), ``externalMedia`` that dials the application's AudioSocket server before it replies and whose
channel enters the app with ``args == [UUID]`` a moment later (``addChannel`` before that is a 422), or
(``transport=websocket connection_type=server``) waits for the app on ``/media/<connection id>``, paced
like chan_websocket (:mod:`ivr.sim.ws_media`),
DTMF as ``ChannelDtmfReceived``, hangups as ``ChannelHangupRequest`` / ``StasisEnd`` / ``ChannelDestroyed``,
a media channel that stays in the bridge after the caller hangs up, originate that returns a ``Down``
channel with the outcome (answer, busy, no answer, congestion) scripted by the test.

Not simulated: RTP external media, playbacks, recordings, snoop, endpoints, device states.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import fnmatch
import itertools
import logging
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from aiohttp import web

from ivr.audiosocket.clock import FrameClock, LoopClock
from ivr.sim.ari_state import (
    HANGUP_REASONS,
    SimBridge,
    SimChannel,
    ari_now,
    cause_text,
    parse_callerid,
)
from ivr.sim.chan_websocket import ChanWebsocketModel
from ivr.sim.event_sockets import EventSockets
from ivr.sim.media_leg import MediaConnector, MediaLeg, tcp_media_connector
from ivr.sim.ws_media import LegFactory, control_form, media_response, silent_leg
from ivr.transport import SLIN_FORMAT_RATES
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


_DIALSTATUS = {"busy": ("BUSY", 17), "noanswer": ("NOANSWER", 19), "congestion": ("CONGESTION", 34)}


class SimAsterisk:
    """The simulated Asterisk. ``async with SimAsterisk() as sim:`` then point the client at ``sim.base_url``.

    Binds 127.0.0.1 on an ephemeral port by default. Every task it starts is cancelled by :meth:`stop`.
    """

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

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (what ``IVR_ARI_URL`` takes; the REST root is ``/ari`` below it)."""
        return f"http://{self.host}:{self.port}"

    async def start(self) -> SimAsterisk:
        app = web.Application(middlewares=[self._middleware])
        self._add_routes(app)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self.host, self.port)
        await self._site.start()
        server = self._site._server
        assert isinstance(server, asyncio.base_events.Server)
        self.port = server.sockets[0].getsockname()[1]
        log.info("simulated ARI listening on %s", self.base_url)
        return self

    async def stop(self) -> None:
        await self._sockets.kill()
        for chan in list(self.channels.values()):
            if chan.media_leg is not None:
                await self._close_leg(chan)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.media_clock is not None:
            self.media_clock.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> SimAsterisk:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

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

    # ------------------------------------------------------------------ HTTP plumbing

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        if request.path.startswith("/media/"):
            return await handler(request)  # chan_websocket asks for no credentials: the id is the key
        if not self._authorized(request):
            return web.json_response(
                {"message": "Authentication required"},
                status=401,
                headers={"WWW-Authenticate": 'Basic realm="Asterisk REST Interface"'},
            )
        try:
            return await handler(request)
        except AriRequestError as exc:
            return web.json_response({"message": exc.message}, status=exc.status)
        except web.HTTPNotFound:
            return web.json_response({"message": "Resource not found"}, status=404)
        except web.HTTPMethodNotAllowed:
            return web.json_response({"message": "Invalid method"}, status=405)

    def _authorized(self, request: web.Request) -> bool:
        api_key = request.query.get("api_key")
        if api_key is not None:
            user, _, password = api_key.partition(":")
            return self._check(user, password)
        header = request.headers.get("Authorization", "")
        if not header.lower().startswith("basic "):
            return False
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, _, password = decoded.partition(":")
        return self._check(user, password)

    def _check(self, user: str, password: str) -> bool:
        return secrets.compare_digest(user.encode(), self.username.encode()) and secrets.compare_digest(
            password.encode(), self.password.encode()
        )

    def _add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/ari/events", self._sockets.handle)
        r.add_get("/media/{id}", self._h_media)
        r.add_get("/ari/asterisk/info", self._h_info)
        r.add_get("/ari/asterisk/ping", self._h_ping)
        r.add_get("/ari/channels", self._h_list_channels)
        r.add_post("/ari/channels", self._h_originate)
        r.add_post("/ari/channels/externalMedia", self._h_external_media)
        r.add_get("/ari/channels/{id}", self._h_get_channel)
        r.add_post("/ari/channels/{id}", self._h_originate)
        r.add_delete("/ari/channels/{id}", self._h_hangup)
        r.add_post("/ari/channels/{id}/answer", self._h_answer)
        r.add_post("/ari/channels/{id}/ring", self._h_ring)
        r.add_delete("/ari/channels/{id}/ring", self._h_ring_stop)
        r.add_post("/ari/channels/{id}/continue", self._h_continue)
        r.add_post("/ari/channels/{id}/redirect", self._h_redirect)
        r.add_post("/ari/channels/{id}/dtmf", self._h_dtmf)
        r.add_get("/ari/channels/{id}/variable", self._h_get_var)
        r.add_post("/ari/channels/{id}/variable", self._h_set_var)
        r.add_get("/ari/bridges", self._h_list_bridges)
        r.add_post("/ari/bridges", self._h_create_bridge)
        r.add_get("/ari/bridges/{id}", self._h_get_bridge)
        r.add_post("/ari/bridges/{id}", self._h_create_bridge)
        r.add_delete("/ari/bridges/{id}", self._h_destroy_bridge)
        r.add_post("/ari/bridges/{id}/addChannel", self._h_add_channel)
        r.add_post("/ari/bridges/{id}/removeChannel", self._h_remove_channel)

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

    # ------------------------------------------------------------------ asterisk

    async def _h_info(self, request: web.Request) -> web.Response:
        now = ari_now()
        return web.json_response(
            {
                "build": {
                    "os": "Linux",
                    "kernel": "",
                    "options": "",
                    "machine": "x86_64",
                    "date": "",
                    "user": "sim",
                },
                "system": {"version": self.version, "entity_id": self.asterisk_id},
                "config": {
                    "name": "ivr-sim",
                    "default_language": "en",
                    "setid": {"user": "asterisk", "group": "asterisk"},
                },
                "status": {"startup_time": now, "last_reload_time": now},
            }
        )

    async def _h_ping(self, request: web.Request) -> web.Response:
        return web.json_response({"asterisk_id": self.asterisk_id, "ping": "pong", "timestamp": ari_now()})

    # ------------------------------------------------------------------ channels: REST

    async def _h_list_channels(self, request: web.Request) -> web.Response:
        return web.json_response([c.to_json() for c in self.channels.values()])

    async def _h_get_channel(self, request: web.Request) -> web.Response:
        return web.json_response(self._channel(request.match_info["id"]).to_json())

    async def _h_originate(self, request: web.Request) -> web.Response:
        q = request.query
        variables = await self._body_variables(request)
        endpoint = q.get("endpoint", "")
        if not endpoint:
            raise AriRequestError(400, "Endpoint must be specified")
        app = q.get("app", "")
        if not app:
            raise AriRequestError(400, "Application or extension must be specified (the simulator needs app)")
        if "/" not in endpoint:
            raise AriRequestError(400, "Invalid endpoint specified")
        channel_id = request.match_info.get("id") or q.get("channelId") or self._new_id()
        if channel_id in self.channels or channel_id in self.destroyed:
            raise AriRequestError(409, "Channel with given unique ID already exists")
        timeout = _int_param(q, "timeout", 30)
        caller = parse_callerid(q["callerId"]) if q.get("callerId") else ("", "")
        seq = next(self._ids)
        name = f"{endpoint}-{seq:08x};1" if endpoint.startswith("Local/") else f"{endpoint}-{seq:08x}"
        app_args = q.get("appArgs", "")
        chan = SimChannel(
            id=channel_id,
            name=name,
            state="Down",
            kind="outbound",
            caller=caller,
            connected=caller,
            app_name="AppDial2",
            app_data="(Outgoing Line)",
            variables=dict(variables),
            app=app,
            args=app_args.split(",") if app_args else [],
            dialstring=endpoint.split("/", 1)[1],
        )
        self.channels[channel_id] = chan
        outcome = self._take_outcome(endpoint)
        self._dials[channel_id] = asyncio.get_running_loop().create_future()
        self._spawn(self._run_originate(chan, outcome, timeout), f"originate-{channel_id}")
        self._notify()
        return web.json_response(chan.to_json())

    async def _h_external_media(self, request: web.Request) -> web.Response:
        q = request.query
        variables = await self._body_variables(request)
        app = q.get("app", "")
        if not app:
            raise AriRequestError(400, "app is required")
        fmt = q.get("format", "")
        if not fmt:
            raise AriRequestError(400, "format is required")
        if q.get("transport", "").lower() == "websocket":
            return self._external_websocket(q, app, fmt, variables)
        external_host = q.get("external_host", "")
        if not external_host:
            raise AriRequestError(400, "external_host is required")
        encapsulation = q.get("encapsulation", "rtp").lower()
        transport = q.get("transport", "udp").lower()
        if (encapsulation, transport) != ("audiosocket", "tcp"):
            # rtp/udp is real Asterisk's default; the simulator only speaks AudioSocket.
            raise AriRequestError(501, "The encapsulation and/or transport is not supported")
        data = q.get("data", "")
        if not data:
            raise AriRequestError(400, "data can not be empty")
        channel_id = q.get("channelId") or self._new_id()
        if channel_id in self.channels or channel_id in self.destroyed:
            raise AriRequestError(409, "Channel with given unique ID already exists")
        try:
            session = uuid.UUID(data)
        except ValueError as exc:
            # chan_audiosocket fails to parse it; ARI reports the failed dial as an allocation failure.
            raise AriRequestError(500, "Allocation failed") from exc
        host, _, port_text = external_host.rpartition(":")
        if not host or not port_text.isdigit():
            raise AriRequestError(500, "Allocation failed")
        try:
            leg = await self.media_connector(host.strip("[]"), int(port_text), session, fmt, channel_id)
        except (OSError, TimeoutError) as exc:
            log.info("sim externalMedia: cannot connect to %s: %s", external_host, exc)
            raise AriRequestError(500, "Allocation failed") from exc
        chan = SimChannel(
            id=channel_id,
            name=f"AudioSocket/{external_host}-{data}",
            state="Down",
            kind="media",
            app_name="AppDial2",
            app_data="(Outgoing Line)",
            native_format=fmt,
            variables=dict(variables),
            app=app,
            args=[data],
            media_uuid=data,
            media_host=external_host,
            media_format=fmt,
            media_leg=leg,
        )
        self.channels[channel_id] = chan
        self._leg_watchers[channel_id] = self._spawn(self._watch_leg(chan, leg), f"leg-{channel_id}")
        snapshot = chan.to_json()
        self._spawn(self._media_enters_stasis(chan, f"{external_host}/{data}"), f"media-{channel_id}")
        self._notify()
        return web.json_response(snapshot)

    def _external_websocket(
        self, q: Mapping[str, str], app: str, fmt: str, variables: dict[str, str]
    ) -> web.Response:
        """chan_websocket as the server: a Down channel that waits for the app on /media/<id>."""
        if q.get("encapsulation", "none").lower() != "none":
            raise AriRequestError(400, "encapsulation must be 'none' for the websocket transport")
        if q.get("connection_type", "client").lower() != "server":
            raise AriRequestError(
                501, "the simulator serves WebSocket media with connection_type=server only"
            )
        rate = SLIN_FORMAT_RATES.get(fmt)
        if rate is None:
            raise AriRequestError(501, f"the simulator's WebSocket media is linear PCM only, not {fmt}")
        channel_id = q.get("channelId") or self._new_id()
        if channel_id in self.channels or channel_id in self.destroyed:
            raise AriRequestError(409, "Channel with given unique ID already exists")
        connection_id = str(uuid.uuid4())
        channelvars = {
            "MEDIA_WEBSOCKET_CONNECTION_ID": connection_id,
            "MEDIA_WEBSOCKET_OPTIMAL_FRAME_SIZE": str(rate // 50 * 2),
        }
        chan = SimChannel(
            id=channel_id,
            name=f"WebSocket/INCOMING/0x{next(self._ids):012x}",
            state="Down",
            kind="media",
            app_name="AppDial2",
            app_data="(Outgoing Line)",
            native_format=fmt,
            variables={**variables, **channelvars},
            app=app,
            media_host="",
            media_format=fmt,
        )
        self.channels[channel_id] = chan
        self._ws_waiting[connection_id] = (chan, control_form(q.get("transport_data", "")))
        self._emit(app, "Dial", dialstatus="", forward="", dialstring="INCOMING", peer=chan.to_json())
        self._notify()
        return web.json_response({**chan.to_json(), "channelvars": channelvars})

    async def _h_media(self, request: web.Request) -> web.StreamResponse:
        """The app connects for a WebSocket media channel: the channel answers and enters Stasis."""
        chan, form = self._ws_waiting.get(request.match_info["id"], (None, ControlForm.PLAIN))
        if chan is None or chan.destroyed:
            return web.Response(status=404, text="no such connection\n")
        if chan.media_leg is not None:
            return web.Response(status=409, text="already connected\n")
        ws = media_response()
        if not ws.can_prepare(request).ok:
            return web.Response(status=400, text="not a WebSocket upgrade\n")
        await ws.prepare(request)
        fmt = chan.media_format or "slin16"
        rate = SLIN_FORMAT_RATES[fmt]
        model = ChanWebsocketModel(
            frame_size=rate // 50 * 2,
            form=form,
            channel_id=chan.id,
            fmt=fmt,
            connection_id=request.match_info["id"],
            channel=chan.name,
        )
        if self.media_clock is None:
            self.media_clock = FrameClock(LoopClock())
        leg = self.websocket_legs(ws, model, self.media_clock, chan.id, rate)
        chan.media_leg = leg
        await ws.send_str(model.media_start())
        self._leg_watchers[chan.id] = self._spawn(self._watch_leg(chan, leg), f"leg-{chan.id}")
        chan.state = "Up"
        self._emit(chan.app, "ChannelStateChange", channel=chan.to_json())
        self._emit(
            chan.app, "Dial", dialstatus="ANSWER", forward="", dialstring="INCOMING", peer=chan.to_json()
        )
        self._enter_stasis(chan)
        self._notify()
        await leg.run()
        return ws

    async def _media_enters_stasis(self, chan: SimChannel, dialstring: str) -> None:
        if self.media_stasis_delay > 0:
            await asyncio.sleep(self.media_stasis_delay)
        else:
            await asyncio.sleep(0)
        if chan.destroyed:
            return
        self._emit(chan.app, "Dial", dialstatus="", forward="", dialstring=dialstring, peer=chan.to_json())
        chan.state = "Up"
        self._emit(chan.app, "ChannelStateChange", channel=chan.to_json())
        self._emit(
            chan.app, "Dial", dialstatus="ANSWER", forward="", dialstring=dialstring, peer=chan.to_json()
        )
        self._enter_stasis(chan)

    def _enter_stasis(self, chan: SimChannel) -> None:
        assert chan.app is not None
        chan.app_name = "Stasis"
        chan.app_data = ",".join([chan.app, *chan.args])
        self._emit(chan.app, "ChannelVarset", variable="STASISSTATUS", value="", channel=chan.to_json())
        chan.in_stasis = True
        self._emit(chan.app, "StasisStart", args=list(chan.args), channel=chan.to_json())

    async def _h_hangup(self, request: web.Request) -> web.Response:
        chan = self._channel(request.match_info["id"])
        reason = request.query.get("reason")
        code = request.query.get("reason_code")
        if reason is not None and code is not None:
            raise AriRequestError(400, "The reason and reason_code can't both be specified")
        cause = 16
        if code is not None:
            if not code.isdigit():
                raise AriRequestError(400, "Invalid reason for hangup provided")
            cause = int(code)
        elif reason is not None:
            if reason not in HANGUP_REASONS:
                raise AriRequestError(400, "Invalid reason for hangup provided")
            cause = HANGUP_REASONS[reason]
        await self._destroy(chan, cause, hangup_request=True, soft=True)
        return self._no_content()

    async def _h_answer(self, request: web.Request) -> web.Response:
        chan = self._control(request.match_info["id"])
        if chan.state != "Up":
            chan.state = "Up"
            chan.ringing = False
            self._emit(chan.app, "ChannelStateChange", channel=chan.to_json())
        return self._no_content()

    async def _h_ring(self, request: web.Request) -> web.Response:
        self._control(request.match_info["id"]).ringing = True
        return self._no_content()

    async def _h_ring_stop(self, request: web.Request) -> web.Response:
        self._control(request.match_info["id"]).ringing = False
        return self._no_content()

    async def _h_continue(self, request: web.Request) -> web.Response:
        chan = self._control(request.match_info["id"])
        q = request.query
        context = q.get("context") or chan.context
        exten = q.get("extension") or chan.exten
        priority = _int_param(q, "priority", chan.priority + 1 if not q.get("extension") else 1)
        self._leave_bridge(chan)
        chan.in_stasis = False
        chan.continued_to = (context, exten, priority)
        self._emit(chan.app, "StasisEnd", channel=chan.to_json())
        chan.app = None  # back in the dialplan: the application gets no more events for it
        chan.context, chan.exten, chan.priority = context, exten, priority
        chan.app_name, chan.app_data = "", ""
        self._notify()
        return self._no_content()

    async def _h_redirect(self, request: web.Request) -> web.Response:
        chan = self._control(request.match_info["id"])
        endpoint = request.query.get("endpoint", "")
        if not endpoint:
            raise AriRequestError(400, "Endpoint parameter not provided")
        if endpoint.split("/", 1)[0].lower() != chan.tech.lower():
            raise AriRequestError(422, "Endpoint is not the same type as the channel")
        chan.redirected_to = endpoint
        self._notify()
        return self._no_content()

    async def _h_dtmf(self, request: web.Request) -> web.Response:
        chan = self._control(request.match_info["id"])
        dtmf = request.query.get("dtmf", "")
        if not dtmf:
            raise AriRequestError(400, "DTMF is required")
        chan.dtmf_sent.append(dtmf)
        self._notify()
        return self._no_content()

    async def _h_get_var(self, request: web.Request) -> web.Response:
        chan = self._channel(request.match_info["id"])
        name = request.query.get("variable", "")
        if not name:
            raise AriRequestError(400, "Variable name is required")
        if name.endswith(")"):
            value = self._read_function(chan, name)
            if value is None:
                raise AriRequestError(500, "Unable to read provided function")
        else:
            found = chan.variables.get(name)
            if found is None:
                raise AriRequestError(404, "Provided variable was not found")
            value = found
        return web.json_response({"value": value})

    @staticmethod
    def _read_function(chan: SimChannel, name: str) -> str | None:
        known = {
            "CHANNEL(audionativeformat)": f"({chan.native_format})",
            "CHANNEL(name)": chan.name,
            "CHANNEL(state)": chan.state,
            "CALLERID(num)": chan.caller[1],
            "CALLERID(name)": chan.caller[0],
            "CALLERID(all)": f'"{chan.caller[0]}" <{chan.caller[1]}>',
        }
        return known.get(name, chan.variables.get(name))

    async def _h_set_var(self, request: web.Request) -> web.Response:
        chan = self._control(request.match_info["id"])
        name = request.query.get("variable", "")
        if not name:
            raise AriRequestError(400, "Variable name is required")
        value = request.query.get("value", "")
        chan.variables[name] = value
        self._emit(chan.app, "ChannelVarset", variable=name, value=value, channel=chan.to_json())
        return self._no_content()

    # ------------------------------------------------------------------ bridges: REST

    async def _h_list_bridges(self, request: web.Request) -> web.Response:
        return web.json_response([b.to_json() for b in self.bridges.values()])

    async def _h_get_bridge(self, request: web.Request) -> web.Response:
        return web.json_response(self._bridge(request.match_info["id"]).to_json())

    async def _h_create_bridge(self, request: web.Request) -> web.Response:
        q = request.query
        bridge_id = request.match_info.get("id") or q.get("bridgeId") or str(uuid.uuid4())
        if bridge_id in self.bridges:
            raise AriRequestError(409, "Bridge with the same bridgeId already exists")
        types = [t.strip() for t in q.get("type", "mixing").split(",") if t.strip()]
        allowed = {"mixing", "holding", "dtmf_events", "proxy_media", "video_sfu", "video_single"}
        if any(t not in allowed for t in types):
            raise AriRequestError(400, "Invalid bridge type")
        bridge_type = "holding" if "holding" in types else "mixing"
        bridge = SimBridge(id=bridge_id, bridge_type=bridge_type, name=q.get("name", ""))
        self.bridges[bridge_id] = bridge
        self._notify()
        return web.json_response(bridge.to_json())

    async def _h_destroy_bridge(self, request: web.Request) -> web.Response:
        bridge = self._bridge(request.match_info["id"])
        for channel_id in list(bridge.channels):
            chan = self.channels.get(channel_id)
            if chan is not None:
                self._leave_bridge(chan)
        del self.bridges[bridge.id]
        for app in sorted(bridge.apps):
            self._emit(app, "BridgeDestroyed", bridge=bridge.to_json())
        self._notify()
        return self._no_content()

    def _channel_params(self, request: web.Request) -> list[str]:
        ids = [c for c in request.query.get("channel", "").split(",") if c]
        if not ids:
            raise AriRequestError(400, "Missing parameter channel")
        return ids

    async def _h_add_channel(self, request: web.Request) -> web.Response:
        bridge = self._bridge(request.match_info["id"])
        ids = self._channel_params(request)
        chans: list[SimChannel] = []
        for channel_id in ids:
            chan = self.channels.get(channel_id)
            if chan is None:
                raise AriRequestError(400, "Channel not found")
            if not chan.in_stasis:
                raise AriRequestError(422, "Channel not in Stasis application")
            chans.append(chan)
        for chan in chans:
            if chan.bridge_id == bridge.id:
                continue
            self._leave_bridge(chan)
            bridge.channels.append(chan.id)
            chan.bridge_id = bridge.id
            if chan.app is not None:
                bridge.apps.add(chan.app)
            self._emit(chan.app, "ChannelEnteredBridge", bridge=bridge.to_json(), channel=chan.to_json())
        self._notify()
        return self._no_content()

    async def _h_remove_channel(self, request: web.Request) -> web.Response:
        bridge = self._bridge(request.match_info["id"])
        ids = self._channel_params(request)
        chans: list[SimChannel] = []
        for channel_id in ids:
            chan = self.channels.get(channel_id)
            if chan is None:
                raise AriRequestError(400, "Channel not found")
            if chan.bridge_id != bridge.id:
                raise AriRequestError(422, "Channel not in this bridge")
            chans.append(chan)
        for chan in chans:
            self._leave_bridge(chan)
        self._notify()
        return self._no_content()

    def _leave_bridge(self, chan: SimChannel) -> None:
        if chan.bridge_id is None:
            return
        bridge = self.bridges.get(chan.bridge_id)
        chan.bridge_id = None
        if bridge is None or chan.id not in bridge.channels:
            return
        bridge.channels.remove(chan.id)
        self._emit(chan.app, "ChannelLeftBridge", bridge=bridge.to_json(), channel=chan.to_json())

    # ------------------------------------------------------------------ hangup and media

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

    async def _watch_leg(self, chan: SimChannel, leg: MediaLeg) -> None:
        await leg.wait_closed()
        if not chan.destroyed:
            log.info("sim: media socket of %s closed by the application; hanging up", chan.id)
            self._leg_watchers.pop(chan.id, None)
            await self._destroy(chan, 16, hangup_request=True)

    # ------------------------------------------------------------------ originate

    def script_originate(self, outcome: OriginateOutcome | str, endpoint: str = "*") -> None:
        """Queue the outcome of the next originate whose endpoint matches ``endpoint`` (fnmatch pattern).

        Unscripted originates are answered after 20 ms.
        """
        if isinstance(outcome, str):
            outcome = OriginateOutcome(outcome)
        self._outcomes.append((endpoint, outcome))

    def _take_outcome(self, endpoint: str) -> OriginateOutcome:
        for i, (pattern, outcome) in enumerate(self._outcomes):
            if fnmatch.fnmatchcase(endpoint, pattern):
                del self._outcomes[i]
                return outcome
        return OriginateOutcome()

    async def _run_originate(self, chan: SimChannel, outcome: OriginateOutcome, timeout: int) -> None:
        dial = self._dials[chan.id]
        await asyncio.sleep(0)
        if chan.destroyed:
            return
        dialstring = chan.dialstring
        self._emit(chan.app, "Dial", dialstatus="", forward="", dialstring=dialstring, peer=chan.to_json())
        no_answer_after = float(timeout) if timeout > 0 else None
        if outcome.result == "ring":
            wait, default = no_answer_after, "noanswer"
        elif outcome.result == "noanswer":
            wait, default = (outcome.delay if outcome.delay is not None else no_answer_after), "noanswer"
        else:
            wait, default = (outcome.delay or 0.0), outcome.result
        try:
            result = await asyncio.wait_for(asyncio.shield(dial), timeout=wait)
        except TimeoutError:
            result = default
        self._dials.pop(chan.id, None)
        if chan.destroyed or result == "cancel":
            return  # hung up while ringing: _destroy sent Dial CANCEL
        if result == "answer":
            chan.state = "Up"
            self._emit(chan.app, "ChannelStateChange", channel=chan.to_json())
            self._emit(
                chan.app, "Dial", dialstatus="ANSWER", forward="", dialstring=dialstring, peer=chan.to_json()
            )
            self._enter_stasis(chan)
            self._notify()
            return
        status, cause = _DIALSTATUS[result]
        self._emit(
            chan.app, "Dial", dialstatus=status, forward="", dialstring=dialstring, peer=chan.to_json()
        )
        await self._destroy(chan, cause, hangup_request=False)

    async def answer_outbound(self, channel_id: str) -> None:
        """Answer an originated channel scripted with ``OriginateOutcome("ring")``."""
        dial = self._dials.get(channel_id)
        if dial is None or dial.done():
            raise SimError(f"channel {channel_id} is not ringing")
        dial.set_result("answer")
        await self.wait_for(lambda: channel_id not in self._dials)

    # ------------------------------------------------------------------ simulated callers

    async def place_call(
        self,
        *,
        exten: str = "100",
        caller: tuple[str, str] = ("Alice", "5551234"),
        args: Iterable[str] = (),
        native_format: str = "slin16",
        app: str | None = None,
        context: str = "from-phone",
        tech: str = "PJSIP",
        answered: bool = False,
        variables: Mapping[str, str] | None = None,
        channel_id: str | None = None,
    ) -> SimChannel:
        """A caller dials ``exten`` and the dialplan runs ``Stasis(app,args...)``: StasisStart is sent.

        ``native_format`` is what ``CHANNEL(audionativeformat)`` reports (``slin16``, ``ulaw``...). The
        channel is in state ``Ring`` unless ``answered`` (the dialplan ran ``Answer()`` first).
        """
        if app is None:
            apps = self._sockets.apps
            if len(apps) != 1:
                raise SimError(f"pass app=...: applications connected: {sorted(apps)}")
            app = apps.pop()
        if app not in self._sockets.apps:
            raise SimError(f"Stasis app {app!r} is not registered (no events WebSocket)")
        chan_id = channel_id or self._new_id()
        if chan_id in self.channels or chan_id in self.destroyed:
            raise SimError(f"channel id {chan_id} already used")
        seq = next(self._ids)
        chan = SimChannel(
            id=chan_id,
            name=f"{tech}/{caller[1] or 'anonymous'}-{seq:08x}",
            state="Up" if answered else "Ring",
            kind="caller",
            caller=caller,
            connected=caller,
            context=context,
            exten=exten,
            priority=2 if answered else 1,
            native_format=native_format,
            variables=dict(variables or {}),
            app=app,
            args=list(args),
        )
        self.channels[chan_id] = chan
        self._enter_stasis(chan)
        self._notify()
        return chan

    async def press_dtmf(self, channel_id: str, digit: str, duration_ms: int = 100) -> None:
        """The caller presses ``digit``: ChannelDtmfReceived on the channel, and ``0x03`` on the AudioSocket
        of every media channel bridged with it (a real Asterisk delivers the digit both ways)."""
        if len(digit) != 1 or digit not in "0123456789*#ABCD":
            raise SimError(f"invalid DTMF digit {digit!r}")
        chan = self.channels.get(channel_id)
        if chan is None:
            raise SimError(f"no channel {channel_id}")
        chan.dtmf_pressed.append(digit)
        self._emit(
            chan.app, "ChannelDtmfReceived", digit=digit, duration_ms=duration_ms, channel=chan.to_json()
        )
        if chan.bridge_id is not None and chan.bridge_id in self.bridges:
            for other_id in self.bridges[chan.bridge_id].channels:
                other = self.channels.get(other_id)
                if other is not None and other is not chan and other.media_leg is not None:
                    await other.media_leg.send_dtmf(digit)

    async def hangup(self, channel_id: str, cause: int = 16) -> None:
        """The far end hangs up: ChannelHangupRequest, [ChannelLeftBridge], StasisEnd, ChannelDestroyed."""
        chan = self.channels.get(channel_id)
        if chan is None:
            raise SimError(f"no channel {channel_id}")
        await self._destroy(chan, cause, hangup_request=True)

    def media_channel_for(self, session: str | uuid.UUID) -> SimChannel | None:
        """The live media channel created by externalMedia with ``data=session``."""
        text = str(session)
        for chan in self.channels.values():
            if chan.media_uuid == text:
                return chan
        return None


def _int_param(query: Mapping[str, str], name: str, default: int) -> int:
    text = query.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError as exc:
        raise AriRequestError(400, f"Invalid value for {name}") from exc
