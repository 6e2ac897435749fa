"""Fixtures: a simulated Asterisk on an ephemeral port, a client, an events stream, an AudioSocket server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ivr.ari import AriClient, Event, EventStream
from ivr.sim import SimAsterisk

CAPTURE = Path(__file__).parent / "data" / "ari-events-asterisk-22.10.1.jsonl"
USER, PASSWORD, APP = "ivr", "s3cret-pw", "ivr"


def capture_events() -> list[dict[str, Any]]:
    return [json.loads(line) for line in CAPTURE.read_text().splitlines() if line.strip()]


@pytest.fixture(autouse=True)
async def no_leaked_tasks() -> AsyncIterator[None]:
    """After each test (and its fixtures' teardown) no simulator, stream or call task is left running."""
    yield
    await asyncio.sleep(0)
    ours = ("sim-", "ari-", "call-events-")
    leaked = [
        t.get_name()
        for t in asyncio.all_tasks()
        if t is not asyncio.current_task() and not t.done() and t.get_name().startswith(ours)
    ]
    assert not leaked, f"tasks left running: {leaked}"


@pytest.fixture
async def sim() -> AsyncIterator[SimAsterisk]:
    async with SimAsterisk(username=USER, password=PASSWORD) as s:
        yield s


@pytest.fixture
async def client(sim: SimAsterisk) -> AsyncIterator[AriClient]:
    async with AriClient(sim.base_url, USER, PASSWORD, timeout=5.0) as c:
        yield c


class Collector:
    """Collects events from a stream and lets a test wait for one."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._changed = asyncio.Event()

    def __call__(self, event: Event) -> None:
        self.events.append(event)
        self._changed.set()

    async def wait(self, type_: str, channel_id: str | None = None, timeout: float = 5.0) -> Event:
        async with asyncio.timeout(timeout):
            while True:
                for event in self.events:
                    if event.type == type_ and (channel_id is None or channel_id in event.channel_ids):
                        return event
                self._changed.clear()
                await self._changed.wait()

    def types(self, channel_id: str | None = None) -> list[str]:
        return [e.type for e in self.events if channel_id is None or channel_id in e.channel_ids]


@pytest.fixture
async def events(client: AriClient) -> AsyncIterator[Collector]:
    """A connected events stream for APP whose events land in a Collector."""
    collector = Collector()
    stream = EventStream(client, APP, collector, backoff_initial=0.05, backoff_max=0.2, heartbeat=2.0)
    stream.start()
    await stream.wait_connected(5.0)
    yield collector
    await stream.close()


@dataclass
class AudioSocketServer:
    """A minimal application-side AudioSocket listener recording what each connection receives."""

    host: str = "127.0.0.1"
    port: int = 0
    received: list[bytearray] = field(default_factory=list)
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    eof: list[asyncio.Event] = field(default_factory=list)
    first_message: list[asyncio.Event] = field(default_factory=list)
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._on_conn, self.host, 0)
        self.port = self.server.sockets[0].getsockname()[1]

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def _on_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buf = bytearray()
        eof, first = asyncio.Event(), asyncio.Event()
        self.received.append(buf)
        self.writers.append(writer)
        self.eof.append(eof)
        self.first_message.append(first)
        self.connected.set()
        try:
            while data := await reader.read(4096):
                buf.extend(data)
                if len(buf) >= 19:
                    first.set()
        except ConnectionError:
            pass
        finally:
            eof.set()
            writer.close()

    async def close(self) -> None:
        for writer in self.writers:
            writer.close()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture
async def audiosocket() -> AsyncIterator[AudioSocketServer]:
    server = AudioSocketServer()
    await server.start()
    yield server
    await server.close()


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``predicate`` until true (for state the simulator does not announce, e.g. socket bytes)."""
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - polling state nobody signals
            await asyncio.sleep(0.01)
