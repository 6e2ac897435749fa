"""The server for Asterisk's per-call outbound ARI WebSockets: one connection per call, any instance.

Every instance runs one :class:`PerCallServer`; a plain WebSocket load balancer in front spreads the
connections, and a call belongs to the instance that accepted its socket (no shared ARI state). See
:mod:`ivr.ari.percall` for what Asterisk does on the socket. This module checks the handshake (path,
``ari`` subprotocol, the basic-auth user and password of ``websocket_client.conf``, capacity), then
hands each identified call to ``on_call(connection)`` in a task the server owns, and cleans up after it:

* a handler that returns while its caller is still in Stasis leaves a call nobody drives: the server
  hangs the caller up (one warning);
* once the socket has closed the handler has ``linger`` seconds to finish its teardown (its REST calls
  now fail at once), then it is cancelled;
* :meth:`PerCallServer.close` stops listening, closes every socket and ends every handler.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import itertools
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Self

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from ivr.ari.errors import AriError
from ivr.ari.percall import ARI_PROTOCOL, DEFAULT_PATH, MAX_MESSAGE_BYTES, CallHandler, PerCallConnection
from ivr.listener import BatchedSite

log = logging.getLogger("ivr.ari.percall")

REFUSALS: Mapping[str, tuple[int, str]] = {
    "path": (404, "not the per-call ARI path"),
    "not_websocket": (400, "not a WebSocket upgrade"),
    "unauthenticated": (401, "no basic-auth credentials"),
    "bad_credentials": (401, "wrong user or password"),
    "subprotocol": (400, f"the '{ARI_PROTOCOL}' subprotocol was not offered"),
    "draining": (503, "draining: taking no new calls"),
    "full": (503, "at the connection limit"),
    "bad_http": (400, "a malformed HTTP request"),
}
"""Why a handshake is refused: the HTTP status Asterisk gets and the text of the log line."""
_REFUSAL_MEMORY = 1024
ENDED_CLOSE_WAIT = 4.0
"""At close: how long to let Asterisk close the sockets of calls that have ended (it does ~3.5 s after
the caller's StasisEnd)."""
STASIS_END_GRACE = 2.0
"""How long after its handler returned a caller may take to leave Stasis before the server hangs it up."""


class PerCallServer:
    """Accepts Asterisk's per-call ARI WebSockets and runs ``on_call`` for each call.

    ``username`` / ``password`` are what Asterisk's ``websocket_client.conf`` entry sends (required).
    ``apps`` are the Stasis application names served (they tell ``<app>:<channel>`` apart when a channel
    name holds a colon). Use as ``async with PerCallServer(...) as server:`` or ``start()`` / ``close()``.
    """

    def __init__(
        self,
        on_call: CallHandler,
        *,
        username: str,
        password: str,
        host: str = "127.0.0.1",
        port: int = 8765,
        path: str = DEFAULT_PATH,
        apps: Iterable[str] = (),
        request_timeout: float = 10.0,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        heartbeat: float | None = 10.0,
        start_timeout: float = 10.0,
        linger: float = 10.0,
        max_connections: int | None = None,
        admit: Callable[[], bool] | None = None,
        reuse_port: bool = False,
        refusal_log_window: float = 60.0,
    ) -> None:
        if not username or not password:
            raise ValueError("the per-call ARI server needs a user and a password (websocket_client.conf)")
        if not path.startswith("/"):
            raise ValueError(f"the per-call ARI path must start with '/', got {path!r}")
        self.host = host
        self.port = port
        self.path = path
        self.apps = tuple(apps)
        self.request_timeout = request_timeout
        self.max_message_bytes = max_message_bytes
        self.heartbeat = heartbeat
        self.start_timeout = start_timeout
        self.linger = linger
        self.max_connections = max_connections
        self.admit = admit
        """Asked at each handshake (after the checks above): False refuses it as ``full`` (503), so
        Asterisk retries, through a balancer maybe elsewhere (e.g. the app is at its call limit)."""
        self.reuse_port = reuse_port
        """``SO_REUSEPORT``: several processes (``ivr run --workers N``) listen on one port and the kernel
        spreads the connections over them."""
        self.refusal_log_window = refusal_log_window
        self.draining = False
        """While set, new connections are refused with 503 (Asterisk retries: elsewhere, behind a balancer)."""
        self.refused: Counter[str] = Counter()
        """Refused handshakes by reason (the keys of :data:`REFUSALS`), for metrics."""
        self.accepted = 0
        self._on_call = on_call
        self._user = username.encode("utf-8")
        self._password = password.encode("utf-8")
        self._connections: set[PerCallConnection] = set()
        self._calls: set[asyncio.Task[None]] = set()
        self._refusal_log: dict[tuple[str, str], tuple[float, int]] = {}
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None

    def __repr__(self) -> str:
        return f"PerCallServer({self.url!r}, connections={len(self._connections)})"

    @property
    def url(self) -> str:
        """The ``uri`` for ``websocket_client.conf`` (as seen from this host)."""
        return f"ws://{self.host}:{self.port}{self.path}"

    @property
    def listening(self) -> bool:
        return self._runner is not None

    @property
    def connections(self) -> frozenset[PerCallConnection]:
        return frozenset(self._connections)

    async def start(self) -> None:
        """Listen (``port`` 0 picks a free one, then ``port`` holds it); ``OSError`` if it is taken."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=1.0,
            logger=_HttpLog(self._note_refusal),
        )
        await runner.setup()
        try:
            # accepted in batches: Asterisk opens one socket per call, and a burst of calls must not
            # wait one turn of a busy loop each (uvloop's own server accepts one per turn)
            await BatchedSite(runner, self.host, self.port, reuse_port=self.reuse_port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        address = runner.addresses[0]
        self.port = int(address[1])
        log.info("per-call ARI server listening on %s", self.url)

    async def close(self, grace: float = 2.0) -> None:
        """Stop listening, close every call's socket (Asterisk may reconnect elsewhere), give the call
        handlers ``grace`` seconds to finish (their REST now fails at once), then cancel them."""
        self.draining = True
        runner, self._runner = self._runner, None
        if runner is None:
            return
        for site in list(runner.sites):
            await site.stop()
        # A socket whose caller has left Stasis is closed by Asterisk within ~3.5 s; closing it from here
        # first would make Asterisk reconnect it (to another instance, which would wait for a call that
        # never comes), so let Asterisk close those.
        ended = [
            asyncio.ensure_future(c.wait_closed())
            for c in self._connections
            if c.left_stasis and not c.closed
        ]
        if ended:
            await asyncio.wait(ended, timeout=ENDED_CLOSE_WAIT)
            for waiter in ended:
                waiter.cancel()
        for conn in list(self._connections):
            with contextlib.suppress(Exception):
                await conn.close()
        if self._calls:
            await asyncio.wait(set(self._calls), timeout=grace)
        for task in list(self._calls):
            task.cancel()
        await asyncio.gather(*self._calls, return_exceptions=True)
        await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- handshake ------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        peer = request.remote or "?"
        if request.path != self.path:
            return self._refuse(peer, "path")
        ws = web.WebSocketResponse(
            protocols=(ARI_PROTOCOL,),
            compress=False,  # Asterisk's client refuses any extension
            heartbeat=self.heartbeat,
            max_msg_size=self.max_message_bytes,
        )
        ready = ws.can_prepare(request)
        if not ready.ok:
            return self._refuse(peer, "not_websocket")
        problem = self._check_credentials(request.headers.get(aiohttp.hdrs.AUTHORIZATION))
        if problem:
            return self._refuse(peer, problem)
        if ready.protocol != ARI_PROTOCOL:
            return self._refuse(peer, "subprotocol")
        if self.draining:
            return self._refuse(peer, "draining")
        if self.max_connections is not None and len(self._connections) >= self.max_connections:
            return self._refuse(peer, "full")
        if self.admit is not None and not self.admit():
            return self._refuse(peer, "full")
        await ws.prepare(request)
        self.accepted += 1
        conn = PerCallConnection(
            ws, peer, apps=self.apps, request_timeout=self.request_timeout, name=f"pc{next(self._ids)}"
        )
        self._connections.add(conn)
        try:
            await self._serve(conn)
        finally:
            self._connections.discard(conn)
        return ws

    def _check_credentials(self, header: str | None) -> str:
        """``""`` when the basic-auth credentials are ours, else the refusal reason (constant time)."""
        scheme, _, token = (header or "").partition(" ")
        if scheme.lower() != "basic" or not token.strip():
            return "unauthenticated"
        try:
            decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return "bad_credentials"
        user, sep, password = decoded.partition(":")
        user_ok = hmac.compare_digest(user.encode("utf-8"), self._user)
        password_ok = hmac.compare_digest(password.encode("utf-8"), self._password)
        return "" if sep and user_ok and password_ok else "bad_credentials"

    def _refuse(self, peer: str, reason: str) -> web.Response:
        status, text = REFUSALS[reason]
        self._note_refusal(peer, reason)
        headers = {"WWW-Authenticate": 'Basic realm="ivr"'} if status == 401 else None
        return web.Response(status=status, text=text, headers=headers)

    def _note_refusal(self, peer: str, reason: str) -> None:
        """One warning per peer and reason per window (repeats are counted into the next line)."""
        text = REFUSALS[reason][1]
        self.refused[reason] += 1
        now = asyncio.get_running_loop().time()
        key = (peer, reason)
        seen = self._refusal_log.get(key)
        if seen is None or now - seen[0] >= self.refusal_log_window:
            more = f" ({seen[1]} more since the last report)" if seen is not None and seen[1] else ""
            log.warning("per-call ARI: refused a connection from %s: %s%s", peer, text, more)
            if len(self._refusal_log) >= _REFUSAL_MEMORY:
                self._refusal_log.clear()
            self._refusal_log[key] = (now, 0)
        else:
            self._refusal_log[key] = (seen[0], seen[1] + 1)

    # -- one call -------------------------------------------------------------------------------

    async def _serve(self, conn: PerCallConnection) -> None:
        reader = asyncio.create_task(conn.read(), name=f"ari-percall-read-{conn.peer}")
        call: asyncio.Task[None] | None = None
        try:
            if await conn.identify(self.start_timeout):
                log.info(
                    "per-call ARI: call %s (%s) from %s%s",
                    conn.channel_id,
                    conn.channel_name,
                    conn.peer,
                    ", resumed after a reconnect" if conn.resumed else "",
                )
                call = asyncio.create_task(self._drive(conn), name=f"ari-percall-call-{conn.channel_id}")
                self._calls.add(call)
                call.add_done_callback(self._calls.discard)
            elif not conn.closed:
                log.warning("per-call ARI %r: no call on it within %g s; closing", conn, self.start_timeout)
                await conn.close(aiohttp.WSCloseCode.POLICY_VIOLATION)
            await reader
            if call is not None:
                done, _ = await asyncio.wait({call}, timeout=self.linger)
                if not done:
                    log.warning(
                        "per-call ARI: call %s: the handler still runs %g s after its socket closed; "
                        "cancelling it",
                        conn.channel_id,
                        self.linger,
                    )
        finally:
            for task in (reader, call):
                if task is not None and not task.done():
                    task.cancel()
            await asyncio.gather(*(t for t in (reader, call) if t is not None), return_exceptions=True)

    async def _drive(self, conn: PerCallConnection) -> None:
        try:
            await self._on_call(conn)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("per-call ARI: call %s: the call handler failed", conn.channel_id)
        if conn.closed:
            return
        if not conn.left_stasis:  # e.g. the handler sent the caller on with `continue`: StasisEnd follows
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STASIS_END_GRACE):
                    await conn.wait_left_stasis()
        if not conn.left_stasis and not conn.closed:
            log.warning(
                "per-call ARI: call %s: the handler ended with the caller still in Stasis; hanging up",
                conn.channel_id,
            )
            with contextlib.suppress(AriError):
                await conn.ari.hangup(conn.channel_id)
        try:
            async with asyncio.timeout(self.linger):
                await conn.wait_closed()
        except TimeoutError:
            log.warning("per-call ARI: call %s: Asterisk kept the socket open; closing it", conn.channel_id)
            await conn.close(aiohttp.WSCloseCode.OK)


class _HttpLog(logging.Logger):
    """aiohttp's server log: a peer's malformed HTTP request (a scanner, TLS on the plain port, a header
    over 8 KiB) is a refusal line like the others, not a traceback; anything else goes on as it was."""

    def __init__(self, note_refusal: Callable[[str, str], None]) -> None:
        super().__init__(log.name)
        self.parent = log
        self._note_refusal = note_refusal

    def exception(self, msg: object, *args: object, exc_info: object = True, **kwargs: Any) -> None:
        if isinstance(exc_info, HttpProcessingError) and args:
            self._note_refusal(str(args[0]), "bad_http")
            return
        log.exception(msg, *args, exc_info=exc_info, **kwargs)  # type: ignore[arg-type]
