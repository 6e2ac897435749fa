"""A TCP relay the test puts between two real peers: it sees how each side closes and can cut links.

* **How a side closes.** A FIN is relayed as a FIN (half-close), so the far side sees what it would see
  directly; a reset (``ECONNRESET`` while reading) is counted per side and relayed as a reset. So a test
  can tell "the app closed cleanly" from "the app reset the connection" without packet capture.
* **Cutting.** :meth:`TcpProxy.cut` aborts both sides of the links whose first bytes match (for example
  the ARI events WebSocket's ``GET /ari/events``): what a network failure or ``ss -K`` does, without
  needing kernel support or root.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

Side = str  # "client" (who connected to the proxy) or "server" (where the proxy connects)


@dataclass
class Link:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    head: bytes = b""
    """The start of every chunk the client sent, up to 4 KB (what :meth:`TcpProxy.cut` matches): a
    pooled HTTP keep-alive connection may carry a WebSocket upgrade after some REST requests."""
    resets: dict[Side, int] = field(default_factory=lambda: {"client": 0, "server": 0})
    fins: dict[Side, int] = field(default_factory=lambda: {"client": 0, "server": 0})
    done: asyncio.Event = field(default_factory=asyncio.Event)
    cut: bool = False


def _pending_reset(writer: asyncio.StreamWriter) -> bool:
    sock = writer.get_extra_info("socket")
    if sock is None:
        return False
    try:
        return bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == errno.ECONNRESET)
    except OSError:
        return False


class TcpProxy:
    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.links: list[Link] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._new_link = asyncio.Event()
        self._blocked: Callable[[bytes], bool] | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self.port

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def resets(self, side: Side) -> int:
        """Links the ``side`` peer reset (instead of closing with a FIN)."""
        return sum(link.resets[side] for link in self.links if not link.cut)

    def block(self, match: Callable[[bytes], bool]) -> None:
        """Reset new links whose first bytes match, until :meth:`unblock` (the far side is unreachable)."""
        self._blocked = match

    def unblock(self) -> None:
        self._blocked = None

    def cut(self, match: Callable[[bytes], bool]) -> int:
        """Abort both sides of every open link whose first bytes match; returns how many."""
        count = 0
        for link in self.links:
            if not link.done.is_set() and match(link.head):
                link.cut = True
                for writer in (link.client, link.server):
                    writer.transport.abort()
                count += 1
        return count

    async def wait_link(self, match: Callable[[bytes], bool], after: int = 0, timeout: float = 10.0) -> Link:
        """The first open link (from index ``after``) whose bytes so far match, once there is one."""
        async with asyncio.timeout(timeout):
            while True:
                for link in self.links[after:]:
                    if not link.done.is_set() and not link.cut and match(link.head):
                        return link
                self._new_link.clear()
                await self._new_link.wait()

    async def settled(self, timeout: float = 10.0) -> None:
        """Until every link has ended on both sides (and late resets had time to arrive)."""
        async with asyncio.timeout(timeout):
            for link in list(self.links):
                await link.done.wait()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in self.links:
            for writer in (link.client, link.server):
                writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        for w in (writer, up_writer):
            sock = w.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        link = Link(writer, up_writer)
        self.links.append(link)
        self._new_link.set()
        pumps = [
            self._spawn(self._pump(link, reader, up_writer, "client", first=True)),
            self._spawn(self._pump(link, up_reader, writer, "server")),
        ]
        await asyncio.gather(*pumps, return_exceptions=True)
        await asyncio.sleep(0.2)  # a reset that answers the last bytes relayed arrives now
        for side, w in (("client", writer), ("server", up_writer)):
            if _pending_reset(w):
                link.resets[side] += 1
        link.done.set()
        for w in (writer, up_writer):
            w.transport.abort() if link.resets["client"] or link.resets["server"] else w.close()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _pump(
        self,
        link: Link,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        side: Side,
        *,
        first: bool = False,
    ) -> None:
        while True:
            try:
                data = await reader.read(65536)
            except ConnectionResetError:
                link.resets[side] += 1
                other = link.server if side == "client" else link.client
                other.transport.abort()  # relay the reset
                return
            except OSError:
                return
            if not data:
                link.fins[side] += 1
                with contextlib.suppress(OSError):
                    if writer.can_write_eof():
                        writer.write_eof()  # relay the FIN as a FIN
                return
            if first and len(link.head) < 4096:
                link.head += data[:256]
                if self._blocked is not None and self._blocked(link.head):
                    link.cut = True
                    link.client.transport.abort()
                    link.server.transport.abort()
                    return
                self._new_link.set()
            try:
                writer.write(data)
                await writer.drain()
            except (ConnectionResetError, BrokenPipeError):
                link.resets["server" if side == "client" else "client"] += 1  # the far side reset
                return
            except OSError:
                return
