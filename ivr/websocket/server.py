"""The app as the WebSocket server that Asterisk dials (``websocket_client.conf`` entry).

Asterisk connects when a channel is made by ``Dial(WebSocket/<entry>/c(slin16))`` or externalMedia
``connection_type=client external_host=<entry>``. It sends the entry's ``username``/``password`` as HTTP
Basic credentials up front (``Authorization: Basic ...``) and ``Sec-WebSocket-Protocol: media`` when the
entry says ``protocols = media``, then MEDIA_START as the first message. For externalMedia the REST reply
comes back *before* Asterisk connects, so calls register the channel id they give (``channelId``) with
:meth:`WebSocketMediaServer.expect` before the request, and await the session.

Refusals cost one log line and nothing else: wrong or missing credentials (401), not a WebSocket
upgrade or another subprotocol (400), over the connection cap (503), no MEDIA_START in time, a malformed
one, or a channel nobody expects (closed 1008: Asterisk hangs that channel up). Listens on 127.0.0.1
unless told otherwise, and refuses to start without credentials.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from ivr.listener import BatchedSite
from ivr.transport import end_handlers
from ivr.websocket.protocol import SUBPROTOCOL
from ivr.websocket.session import SessionConfig, WebSocketMediaSession, read_media_start

log = logging.getLogger(__name__)

SessionHandler = Callable[[WebSocketMediaSession], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class WebSocketServerConfig:
    host: str = "127.0.0.1"
    port: int = 8766
    path: str = "/media"
    """The path of the entry's ``uri`` (anything below it is accepted too: ``v()`` adds a query)."""
    username: str = ""
    password: str = field(default="", repr=False)
    start_timeout: float = 5.0
    """Seconds after the upgrade for MEDIA_START."""
    max_connections: int = 1000
    heartbeat: float | None = 10.0
    """WebSocket ping interval; a peer that stops answering is closed (None: no pings)."""
    session: SessionConfig = field(default_factory=SessionConfig)
    reuse_port: bool = False
    """SO_REUSEPORT: several processes (``ivr run --workers N`` in dialplan-only mode) listen on one port
    and the kernel spreads Asterisk's connections over them."""


@dataclass(slots=True)
class ServerStats:
    connections: int = 0
    refused_auth: int = 0
    refused_bad_request: int = 0
    refused_capacity: int = 0
    refused_unexpected: int = 0
    refused_start: int = 0
    handler_errors: int = 0


@dataclass(slots=True)
class Expectation:
    """A channel id the app is about to give Asterisk (externalMedia ``channelId``)."""

    channel_id: str
    future: asyncio.Future[WebSocketMediaSession] = field(repr=False)
    _server: WebSocketMediaServer = field(repr=False)

    async def wait(self, timeout: float) -> WebSocketMediaSession:
        """The session once Asterisk connected for this channel; TimeoutError (and dropped) if not."""
        try:
            return await asyncio.wait_for(asyncio.shield(self.future), timeout)
        except TimeoutError:
            self.cancel()
            raise TimeoutError(
                f"no WebSocket media connection for {self.channel_id} within {timeout:g} s"
            ) from None

    def cancel(self) -> None:
        if self._server._expected.get(self.channel_id) is self:
            del self._server._expected[self.channel_id]
        if not self.future.done():
            self.future.cancel()


class WebSocketMediaServer:
    """aiohttp server for Asterisk's chan_websocket client connections; owns every session on it."""

    def __init__(self, config: WebSocketServerConfig, *, on_session: SessionHandler | None = None) -> None:
        if not config.username or not config.password:
            raise ValueError(
                "WebSocket media server needs a username and password (the websocket_client.conf "
                "entry's username/password); refusing to accept unauthenticated media"
            )
        self.config = config
        self.on_session = on_session
        self.stats = ServerStats()
        self.sessions: dict[str, WebSocketMediaSession] = {}
        self._expected: dict[str, Expectation] = {}
        self._handlers: set[asyncio.Task[None]] = set()
        self._open = 0
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._site: BatchedSite | None = None
        self._credentials = f"{config.username}:{config.password}".encode()

    # -- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        path = "/" + self.config.path.strip("/")
        app.router.add_get(path, self._handle)
        app.router.add_get(path + "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await self._runner.setup()
        self._site = BatchedSite(  # a burst of calls' connections accepted at one turn of the loop
            self._runner,
            self.config.host,
            self.config.port,
            backlog=1024,
            reuse_port=self.config.reuse_port,
        )
        await self._site.start()
        log.info("WebSocket media listening on ws://%s:%d%s", *self.address, path)

    @property
    def address(self) -> tuple[str, int]:
        server = self._site._server if self._site is not None else None
        sockets = getattr(server, "sockets", None)
        if not sockets:
            raise RuntimeError("server not started")
        host, port = sockets[0].getsockname()[:2]
        return str(host), int(port)

    @property
    def port(self) -> int:
        return self.address[1]

    def stop_accepting(self) -> None:
        """Shutdown has begun: refuse new connections (503, Asterisk hangs that call up); live ones go on."""
        self._closing = True

    async def close(self) -> None:
        """Stop listening, hang up every session, and wait for their handlers."""
        self._closing = True
        for expectation in list(self._expected.values()):
            expectation.cancel()
        for session in list(self.sessions.values()):
            session.hangup("server closing")
        await end_handlers(self._handlers)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> WebSocketMediaServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- expectations -------------------------------------------------------------------------------

    def expect(self, channel_id: str) -> Expectation:
        """Register a channel id before asking Asterisk for it (synchronous on purpose)."""
        if channel_id in self._expected or channel_id in self.sessions:
            raise ValueError(f"channel {channel_id} is already expected or live")
        expectation = Expectation(channel_id, asyncio.get_running_loop().create_future(), self)
        self._expected[channel_id] = expectation
        return expectation

    # -- connections --------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        peer = _peer(request)
        if self._closing or self._open >= self.config.max_connections:
            self.stats.refused_capacity += 1
            log.warning(
                "WebSocket media from %s refused: %s", peer, "closing" if self._closing else "at capacity"
            )
            return web.Response(status=503, text="over capacity\n")
        if not self._authorized(request.headers.get("Authorization", "")):
            self.stats.refused_auth += 1
            log.warning("WebSocket media from %s refused: missing or wrong credentials", peer)
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="ivr media"'})
        ws = web.WebSocketResponse(
            protocols=(SUBPROTOCOL,),
            heartbeat=self.config.heartbeat,
            max_msg_size=1 << 20,
            compress=False,
            timeout=self.config.session.close_timeout,
        )
        offered = [
            p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()
        ]
        # Checked before aiohttp's own negotiation, which would add a log line of its own.
        what = (
            f"subprotocols {offered}, not {SUBPROTOCOL!r}" if offered and SUBPROTOCOL not in offered else ""
        )
        if not what and not ws.can_prepare(request).ok:
            what = "not a WebSocket upgrade"
        if what:
            self.stats.refused_bad_request += 1
            log.warning("WebSocket media from %s refused: %s", peer, what)
            return web.Response(status=400, text=f"{what}\n")
        self._open += 1
        self.stats.connections += 1
        try:
            await ws.prepare(request)
            session = await self._open_session(ws, peer)
            if session is not None:
                await session.run()
        except (ConnectionError, OSError) as exc:  # gone during the upgrade or MEDIA_START
            log.warning("WebSocket media from %s lost before it started: %r", peer, exc)
        finally:
            self._open -= 1
        return ws

    async def _open_session(self, ws: web.WebSocketResponse, peer: str) -> WebSocketMediaSession | None:
        try:
            start = await read_media_start(ws, self.config.start_timeout)
            session = WebSocketMediaSession(ws, start, shape="server", peer=peer, config=self.config.session)
        except (ValueError, TimeoutError) as exc:  # ProtocolError is a ValueError
            self.stats.refused_start += 1
            log.warning("WebSocket media from %s refused: %s", peer, exc)
            await ws.close(code=1002)
            return None
        channel_id = start.channel_id or ""
        expectation = self._expected.pop(channel_id, None)
        if channel_id in self.sessions or (expectation is None and self.on_session is None):
            self.stats.refused_unexpected += 1
            why = "already connected" if channel_id in self.sessions else "no call expects it"
            log.warning("WebSocket media from %s refused: channel %s %s", peer, channel_id or "(no id)", why)
            await ws.close(code=1008)
            return None
        self.sessions[channel_id] = session
        session.add_close_callback(lambda: self._forget(channel_id, session))
        log.info(
            "media %s: Asterisk connected from %s (%s, %d-byte frames)",
            channel_id,
            peer,
            start.format,
            session.frame_size,
        )
        if expectation is not None and not expectation.future.done():
            expectation.future.set_result(session)
        elif self.on_session is not None:
            task = asyncio.get_running_loop().create_task(
                self._run_handler(session), name=f"ivr-ws-call-{channel_id}"
            )
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)
        else:  # the expectation was cancelled between pop and here: nobody wants this call
            session.hangup("no call expects it")
        return session

    async def _run_handler(self, session: WebSocketMediaSession) -> None:
        assert self.on_session is not None
        try:
            await self.on_session(session)
        except asyncio.CancelledError:
            raise
        except Exception:
            self.stats.handler_errors += 1
            log.exception("media %s: session handler failed", session.channel_id)
        finally:
            session.hangup("handler finished")

    def _forget(self, channel_id: str, session: WebSocketMediaSession) -> None:
        if self.sessions.get(channel_id) is session:
            del self.sessions[channel_id]

    def _authorized(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            given = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(given, self._credentials)


def _peer(request: web.Request) -> str:
    peername = request.transport.get_extra_info("peername") if request.transport else None
    with contextlib.suppress(TypeError, IndexError):
        if peername:
            return f"{peername[0]}:{peername[1]}"
    return str(request.remote)
