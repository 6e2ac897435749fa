"""A test peer that talks to the server the way a real Asterisk does (UUID first, FIN on hangup)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

from ivr.audiosocket.protocol import Frame, FrameDecoder, encode_uuid
from ivr.audiosocket.server import AudioSocketServer
from ivr.audiosocket.session import AudioSocketSession


class AsteriskPeer:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = FrameDecoder(max_payload=65535)
        self.pending: list[Frame] = []
        self.eof = False

    @classmethod
    async def connect(cls, port: int, call_id: uuid.UUID | None = None) -> AsteriskPeer:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        peer = cls(reader, writer)
        if call_id is not None:
            await peer.send(encode_uuid(call_id))
        return peer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read_frames(self, count: int, timeout: float = 5.0) -> list[Frame]:
        async with asyncio.timeout(timeout):
            while len(self.pending) < count and not self.eof:
                await self._read()
        out, self.pending = self.pending[:count], self.pending[count:]
        return out

    async def read_until_eof(self, timeout: float = 5.0) -> list[Frame]:
        async with asyncio.timeout(timeout):
            while not self.eof:
                await self._read()
        out, self.pending = self.pending, []
        return out

    async def _read(self) -> None:
        try:
            data = await self.reader.read(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return
        for frame in self.decoder.feed(data):
            # keep payloads past the read buffer's life
            self.pending.append(frame)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


async def open_call(
    server: AudioSocketServer, fmt: str = "slin16"
) -> tuple[AsteriskPeer, AudioSocketSession]:
    """An expected call, as ARI mode opens one: the UUID registered before Asterisk is asked to connect,
    then Asterisk connects and sends it; returns the peer and the server's session."""
    call_id = uuid.uuid4()
    expectation = server.expect(call_id, fmt)
    peer = await AsteriskPeer.connect(server.port, call_id)
    return peer, await expectation.wait(2)
