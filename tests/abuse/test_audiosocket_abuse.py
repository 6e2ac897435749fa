"""Hostile and broken peers on the AudioSocket port cost at most their own connection.

Each case runs beside a live, expected call and checks: no crash, the live call unaffected (it keeps
receiving its 20 ms frames and its DTMF still arrives), a counter moved, and the bad connection closed.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from ivr.audiosocket import AudioSocketConfig, AudioSocketServer, AudioSocketSession, encode_dtmf
from ivr.audiosocket.protocol import encode_uuid
from ivr.transport import DigitIn

from ..audiosocket.peer import AsteriskPeer


@dataclass
class Live:
    server: AudioSocketServer
    peer: AsteriskPeer
    session: AudioSocketSession

    async def still_fine(self) -> None:
        before = len(self.peer.pending) + len(await self.peer.read_frames(5))
        assert before >= 5, "the live call keeps receiving frames"
        await self.peer.send(encode_dtmf("5"))
        async with asyncio.timeout(5):
            while (event := await self.session.inbound.get()) != DigitIn("5"):
                assert event is not None
        assert not self.session.closed


@pytest.fixture
async def live() -> AsyncIterator[Live]:
    async def handler(session: AudioSocketSession) -> None:
        await session.wait_closed()

    config = AudioSocketConfig(port=0, uuid_timeout=0.5, max_connections=3000, idle_timeout=30)
    server = AudioSocketServer(config, on_session=handler)
    await server.start()
    call_id = uuid.uuid4()
    expectation = server.expect(call_id, "slin16")
    peer = await AsteriskPeer.connect(server.port, call_id)
    session = await expectation.wait(2)
    yield Live(server, peer, session)
    await peer.close()
    await server.close()


async def raw(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def closed_by_server(reader: asyncio.StreamReader, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while await reader.read(65536):
            pass


async def test_random_bytes_truncated_headers_and_oversize_lengths(live: Live) -> None:
    rng = random.Random(1234)
    port = live.server.port
    for i in range(40):
        reader, writer = await raw(port)
        if i % 4 == 0:
            writer.write(bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 4000))))
        elif i % 4 == 1:
            writer.write(encode_uuid(uuid.uuid4()) + b"\x12\xff\xff")  # a 65535-byte audio frame announced
        elif i % 4 == 2:
            writer.write(encode_uuid(uuid.uuid4()) + b"\x10\x00\x03abc")  # odd-length audio
        else:
            writer.write(b"\x01\x00")  # a truncated header, then the peer goes away
            writer.close()
            continue
        await writer.drain()
        await closed_by_server(reader)
        writer.close()
    await live.still_fine()
    assert live.server.stats.protocol_errors >= 20


async def test_slow_loris_never_completing_the_uuid_is_cut_at_the_uuid_timeout(live: Live) -> None:
    reader, writer = await raw(live.server.port)
    message = encode_uuid(uuid.uuid4())

    async def dribble() -> None:
        for byte in message[:-1]:  # never the last byte
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.05)

    task = asyncio.create_task(dribble())
    await closed_by_server(reader, timeout=3)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    writer.close()
    assert live.server.stats.uuid_timeouts >= 1
    await live.still_fine()


async def test_a_thousand_idle_connections(live: Live) -> None:
    conns = [await raw(live.server.port) for _ in range(1000)]
    await live.still_fine()
    await asyncio.gather(*(closed_by_server(r, timeout=10) for r, _ in conns))
    for _, writer in conns:
        writer.close()
    assert live.server.stats.uuid_timeouts >= 1000
    assert len(live.server._connections) == 1, "only the live call's connection is left"
    await live.still_fine()


async def test_peer_vanishing_with_a_reset_ends_only_its_session(live: Live) -> None:
    call_id = uuid.uuid4()
    _, writer = await raw(live.server.port)
    writer.write(encode_uuid(call_id))
    await writer.drain()
    async with asyncio.timeout(2):
        while call_id not in live.server.sessions:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    session = live.server.sessions[call_id]
    writer.transport.abort()  # RST, no FIN
    assert "connection" in await asyncio.wait_for(session.wait_closed(), 5)
    await live.still_fine()
