"""The caller's ear and mouth for real-Asterisk tests: an AudioSocket server the caller's Local channel dials
(``Local/dial16@audiosocket-test``), timestamping every audio frame Asterisk sends it.

What the app plays over WebSocket media goes app -> chan_websocket queue (paced by its 20 ms timer) ->
bridge -> caller ``;1`` -> ``;2`` -> AudioSocket -> here, so arrival times show Asterisk's pacing.
"""

from __future__ import annotations

import asyncio
import math
import struct
import time

from ivr.audiosocket.protocol import Audio, FrameDecoder, encode_audio

LOUD = 1000
"""Peak above which a frame counts as prompt audio (the test tone peaks at 8,000; silence is 0)."""


def tone(frames: int, rate: int = 16000, hz: float = 440.0) -> bytes:
    count = frames * rate // 50
    return b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * hz * i / rate))) for i in range(count)
    )


class Ear(asyncio.Protocol):
    def __init__(self) -> None:
        self.decoder = FrameDecoder(max_payload=65535)
        self.arrivals: list[tuple[float, int]] = []
        """(monotonic time, peak) of every audio frame received."""
        self.transport: asyncio.Transport | None = None
        self.connected = asyncio.Event()
        self._arrived = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.connected.set()

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        for frame in self.decoder.feed(data):
            if isinstance(frame, Audio):
                payload = bytes(frame.payload)
                samples = struct.unpack(f"<{len(payload) // 2}h", payload)
                self.arrivals.append((now, max((abs(s) for s in samples), default=0)))
                self._arrived.set()

    def loud(self) -> list[float]:
        return [t for t, peak in self.arrivals if peak > LOUD]

    def say(self, pcm: bytes, rate: int = 16000) -> None:
        """Send caller audio (20 ms AudioSocket messages) towards the app."""
        assert self.transport is not None
        step = rate // 50 * 2
        for pos in range(0, len(pcm) - step + 1, step):
            self.transport.write(encode_audio(pcm[pos : pos + step], rate))

    async def wait_quiet(self, quiet: float, timeout: float = 10.0) -> None:
        """Until no frame has arrived for ``quiet`` seconds."""
        async with asyncio.timeout(timeout):
            while True:
                self._arrived.clear()
                try:
                    async with asyncio.timeout(quiet):
                        await self._arrived.wait()
                except TimeoutError:
                    return

    async def wait_loud(self, count: int, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.loud()) < count:
                self._arrived.clear()
                await self._arrived.wait()


async def start_ear() -> tuple[asyncio.Server, Ear]:
    ear = Ear()
    server = await asyncio.get_running_loop().create_server(lambda: ear, "127.0.0.1", 0)
    return server, ear
