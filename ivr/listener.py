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
import errno
import logging
import socket
from collections.abc import Callable

from aiohttp import web

log = logging.getLogger(__name__)

RETRY_AFTER = 1.0
"""Seconds before accepting again after the process ran out of descriptors or memory (as asyncio)."""
_RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


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
        self._sock: socket.socket | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self._retry: asyncio.TimerHandle | None = None
        self._resource_errors = 0

    async def start(self) -> None:
        """Bind and listen (``OSError`` if the address is taken); accepting starts at once."""
        self._loop = loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _name, address = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self.reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(address)
            sock.listen(self.backlog)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self.sockets = [sock]
        loop.add_reader(sock.fileno(), self._accept)

    def _accept(self) -> None:
        sock, loop = self._sock, self._loop
        if sock is None or loop is None:
            return
        for _ in range(self.batch):
            try:
                conn, _peer = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue  # the peer gave up while it waited in the queue
            except OSError as exc:
                if exc.errno not in _RESOURCE_ERRORS:
                    raise
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
        """Out of descriptors (or memory): stop accepting for a moment instead of spinning on it."""
        self._resource_errors += 1
        if self._resource_errors == 1 or self._resource_errors % 100 == 0:
            log.warning(
                "cannot accept on %s:%d: %s; retrying in %g s (%d times so far)",
                self.host,
                self.port,
                exc.strerror,
                RETRY_AFTER,
                self._resource_errors,
            )
        assert self._loop is not None
        assert self._sock is not None
        self._loop.remove_reader(self._sock.fileno())
        self._retry = self._loop.call_later(RETRY_AFTER, self._resume)

    def _resume(self) -> None:
        self._retry = None
        if self._sock is not None and self._loop is not None:
            self._loop.add_reader(self._sock.fileno(), self._accept)

    def close(self) -> None:
        """Stop listening (new connections are refused by the kernel); accepted ones go on."""
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        sock, self._sock = self._sock, None
        if sock is not None:
            assert self._loop is not None
            self._loop.remove_reader(sock.fileno())
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
        self._listener: BatchedListener | None = None

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
        self._listener = listener

    async def stop(self) -> None:
        await super().stop()
        if self._listener is not None:
            await self._listener.wait_closed()  # no accepted connection's start left pending
