"""The boundary between the simulated ARI and the AudioSocket leg it dials for ``externalMedia``.

``POST /channels/externalMedia`` calls a :data:`MediaConnector` *before* it replies, as Asterisk does:
``connect(host, port, uuid, fmt, channel_id)`` opens the TCP connection, sends the UUID message and
returns a :class:`MediaLeg`. Plug a richer caller leg (audio frames, recording what it hears) in through
``SimAsterisk(media_connector=...)``. :func:`tcp_media_connector` is the default: UUID only, it reads and
discards what the application sends, and reacts to the end of the session like Asterisk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import uuid
from collections.abc import Awaitable, Callable
from typing import Protocol

from ivr.audiosocket.protocol import encode_dtmf, encode_uuid

log = logging.getLogger("ivr.sim.media")

CONNECT_TIMEOUT = 2.0
"""chan_audiosocket gives up connecting after 2 s."""

_AUDIO_KINDS = frozenset(range(0x10, 0x19))


class MediaLeg(Protocol):
    """Asterisk's side of one AudioSocket session, as seen by the simulated ARI."""

    async def wait_closed(self) -> None:
        """Return when the application ended the session (EOF, hangup message or protocol error)."""

    async def send_dtmf(self, digit: str) -> None:
        """Deliver a caller's digit over the socket (``0x03``), as the bridge does."""

    async def close(self) -> None:
        """The media channel was hung up: close the connection with FIN."""


MediaConnector = Callable[[str, int, uuid.UUID, str, str], Awaitable[MediaLeg]]


async def write_dtmf(writer: asyncio.StreamWriter, digit: str) -> None:
    """A digit as the bridge forwards it over the socket (``0x03``); nothing if the leg is gone."""
    if writer.is_closing():
        return
    writer.write(encode_dtmf(digit))
    with contextlib.suppress(ConnectionError, OSError):
        await writer.drain()


class TcpMediaLeg:
    """Default leg: a TCP connection that sent the UUID and then only listens."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, channel_id: str) -> None:
        self.channel_id = channel_id
        self.frames_received = 0
        self.audio_bytes_received = 0
        self.error: str | None = None
        """Why the session ended from the application's side, if it sent something invalid."""
        self._reader = reader
        self._writer = writer
        self._closed_by_app = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._read(), name=f"sim-media-{channel_id}")

    async def _read(self) -> None:
        try:
            while True:
                header = await self._reader.readexactly(3)
                kind, length = header[0], int.from_bytes(header[1:3], "big")
                if length:
                    await self._reader.readexactly(length)
                self.frames_received += 1
                if kind == 0x00:
                    return  # hangup message: Asterisk hangs the channel up
                if kind in _AUDIO_KINDS and length > 0:
                    self.audio_bytes_received += length
                    continue
                # 0x01, 0x03, 0xff, unknown kinds or an empty audio message: Asterisk hangs up, resets.
                self.error = f"invalid message kind 0x{kind:02x} length {length}"
                log.info("sim media %s: %s; hanging up", self.channel_id, self.error)
                self._writer.transport.abort()
                return
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            return
        finally:
            self._closed_by_app.set()

    async def wait_closed(self) -> None:
        await self._closed_by_app.wait()

    async def send_dtmf(self, digit: str) -> None:
        await write_dtmf(self._writer, digit)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        if not self._writer.is_closing():
            self._writer.close()  # FIN
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()


async def tcp_media_connector(
    host: str, port: int, session: uuid.UUID, fmt: str, channel_id: str
) -> TcpMediaLeg:
    """Connect like chan_audiosocket: TCP (Nagle off, 2 s timeout), then ``01 00 10`` + the UUID bytes."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout=CONNECT_TIMEOUT)
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    writer.write(encode_uuid(session))
    try:
        await writer.drain()
    except (ConnectionError, OSError):
        writer.close()
        raise
    return TcpMediaLeg(reader, writer, channel_id)
