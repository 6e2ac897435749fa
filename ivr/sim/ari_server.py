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

The server is split by resource: shared state and primitives in :mod:`ivr.sim.ari_core`, the routes in
:mod:`ivr.sim.ari_channels`, :mod:`ivr.sim.ari_originate`, :mod:`ivr.sim.ari_external_media` and
:mod:`ivr.sim.ari_bridges`; this module is the server (lifecycle, auth, routing) and the callers' API.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import TracebackType

from aiohttp import web

from ivr.sim.ari_bridges import BridgeRoutes
from ivr.sim.ari_channels import ChannelRoutes
from ivr.sim.ari_core import ASTERISK_VERSION, AriRequestError, OriginateOutcome, SimError
from ivr.sim.ari_external_media import ExternalMediaRoutes
from ivr.sim.ari_originate import OriginateRoutes
from ivr.sim.ari_state import SimChannel, ari_now

__all__ = ["ASTERISK_VERSION", "AriRequestError", "OriginateOutcome", "SimAsterisk", "SimError"]

log = logging.getLogger("ivr.sim.ari")


class SimAsterisk(ChannelRoutes, OriginateRoutes, ExternalMediaRoutes, BridgeRoutes):
    """The simulated Asterisk. ``async with SimAsterisk() as sim:`` then point the client at ``sim.base_url``.

    Binds 127.0.0.1 on an ephemeral port by default. Every task it starts is cancelled by :meth:`stop`.
    The constructor's arguments and the state are :class:`~ivr.sim.ari_core.SimCore`'s; the REST routes
    come from its resource mixins.
    """

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
