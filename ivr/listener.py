"""A TCP listener that accepts every waiting connection at each wake-up, not one.

uvloop's ``create_server`` (libuv since 1.45) accepts one connection per turn of the event loop. A
serving process with hundreds of live calls turns its loop every 100-300 ms while it is busy, so a burst
of new calls is accepted at 3-10 a second and Asterisk's media connections wait in the kernel's listen
queue until their set-up's deadline has passed (measured: one ``accept4`` per 100-300 ms in a worker
with 900 calls, 24 connections queued). This listener drains the queue up to ``batch`` connections
each time the socket is readable, on either loop, and hands each to ``connect_accepted_socket``.

It offers what the servers use of ``asyncio.Server``: ``sockets``, ``close()``, ``wait_closed()``, so
an aiohttp site (:class:`BatchedSite`) can use it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable

from aiohttp import web

log = logging.getLogger(__name__)

RETRY_AFTER = 1.0
"""Seconds before accepting again after accepting failed (out of descriptors or memory), as asyncio."""


class BatchedListener:
    """Listens on ``host:port`` and gives each accepted connection a protocol from ``factory``."""

    def __init__(
        self,
        factory: Callable[[], asyncio.BaseProtocol],
        host: str,
        port: int,
        *,
        backlog: int = 1024,
        reuse_port: bool = False,
        batch: int = 256,
    ) -> None:
        self.factory = factory
        self.host = host
        self.port = port
        self.backlog = backlog
        self.reuse_port = reuse_port
        self.batch = batch
        self.sockets: list[socket.socket] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self._retry: asyncio.TimerHandle | None = None
        self._errors = 0

    async def start(self) -> None:
        """Bind and listen on every address ``host`` names, as ``create_server`` does (``localhost``:
        127.0.0.1 and ::1); ``OSError`` if one is taken. Accepting starts at once."""
        self._loop = loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        try:
            for family, kind, proto, _name, address in dict.fromkeys(infos):
                sock = socket.socket(family, kind, proto)
                self.sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if self.reuse_port:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # IPv4 has its own
                sock.bind(address)
                sock.listen(self.backlog)
                sock.setblocking(False)
        except OSError:
            for sock in self.sockets:
                sock.close()
            self.sockets = []
            raise
        self._watch()

    def _watch(self) -> None:
        assert self._loop is not None
        for sock in self.sockets:
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    def _unwatch(self) -> None:
        assert self._loop is not None
        for sock in self.sockets:
            self._loop.remove_reader(sock.fileno())

    def _accept(self, sock: socket.socket) -> None:
        loop = self._loop
        assert loop is not None
        for _ in range(self.batch):
            try:
                conn, _peer = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue  # the peer gave up while it waited in the queue
            except OSError as exc:  # out of descriptors or memory, mostly
                self._pause(exc)
                return
            conn.setblocking(False)
            if conn.family in (socket.AF_INET, socket.AF_INET6):
                with contextlib.suppress(OSError):
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            task = loop.create_task(self._connect(conn))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _connect(self, conn: socket.socket) -> None:
        assert self._loop is not None
        try:
            await self._loop.connect_accepted_socket(self.factory, sock=conn)
        except Exception as exc:  # the peer reset before its transport existed
            log.debug("accepted connection lost before it started: %s", exc)
            conn.close()

    def _pause(self, exc: OSError) -> None:
        """Accepting failed (out of descriptors, say): stop for a moment instead of spinning on it."""
        self._errors += 1
        if self._errors == 1 or self._errors % 100 == 0:
            log.warning(
                "cannot accept on %s:%d: %s; retrying in %g s (%d times so far)",
                self.host,
                self.port,
                exc.strerror or exc,
                RETRY_AFTER,
                self._errors,
            )
        if self._retry is None:
            self._unwatch()
            assert self._loop is not None
            self._retry = self._loop.call_later(RETRY_AFTER, self._resume)

    def _resume(self) -> None:
        self._retry = None
        if self.sockets:
            self._watch()

    def close(self) -> None:
        """Stop listening (new connections are refused by the kernel); accepted ones go on."""
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        elif self.sockets:
            self._unwatch()
        for sock in self.sockets:
            sock.close()
        self.sockets = []

    async def wait_closed(self) -> None:
        """Until the connections accepted before :meth:`close` have their transports."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)


class BatchedSite(web.BaseSite):
    """An aiohttp site on a :class:`BatchedListener`, for servers that take bursts of connections."""

    def __init__(
        self, runner: web.BaseRunner, host: str, port: int, *, reuse_port: bool = False, backlog: int = 1024
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self._host = host
        self._port = port
        self._reuse_port = reuse_port

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        listener = BatchedListener(
            server, self._host, self._port, backlog=self._backlog, reuse_port=self._reuse_port
        )
        await listener.start()
        self._server = listener  # type: ignore[assignment]  # what BaseSite uses of asyncio.Server

    async def stop(self) -> None:
        listener: object = self._server  # typed as asyncio's server by BaseSite; ours since start()
        await super().stop()
        if isinstance(listener, BatchedListener):
            await listener.wait_closed()  # no accepted connection's start left pending
