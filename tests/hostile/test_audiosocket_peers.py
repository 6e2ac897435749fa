"""Malformed and hostile AudioSocket peers against ``ivr run --no-ari`` (the open door of dialplan-only
mode): each gets one log line naming the peer and what was wrong, never a traceback; the process stays
up; the calls beside them keep steady frames; every peer that opened a call (sent a UUID) gets exactly
one record and one "ended" line, and ``ivr_active_calls`` comes back to where it was.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from ivr.audiosocket.protocol import encode_audio, encode_dtmf, encode_hangup, encode_uuid
from ivr.call.report import CallReport
from ivr.config import load_settings
from ivr.sim.caller_leg import CallerLeg, CallerLegs
from ivr.workers.process import serve
from tests.asterisk.ivr_runs import ivr_env
from tests.call.conftest import DATA

GOOD_CALLS = 2


@dataclass
class Hostile:
    """What one hostile peer sends; ``opens_call``: it sends a valid UUID first (so it is a call)."""

    name: str
    data: bytes
    opens_call: bool
    keep_open: float = 0.0
    reset: bool = False
    call_id: uuid.UUID = field(default_factory=uuid.uuid4)


def hostile_peers(rng: random.Random) -> list[Hostile]:
    def with_uuid(name: str, rest: bytes, **kw: Any) -> Hostile:
        h = Hostile(name, b"", True, **kw)
        h.data = encode_uuid(h.call_id) + rest
        return h

    peers = [
        with_uuid("uuid and odd-length audio in one packet", b"\x10\x00\x03abc"),
        with_uuid("uuid and an invalid DTMF digit in one packet", b"\x03\x00\x01x"),
        with_uuid("uuid and an oversize length in one packet", b"\x12\xff\xff" + bytes(100)),
        with_uuid("uuid and a zero-length UUID in one packet", b"\x01\x00\x00"),
        with_uuid("uuid and an error message", b"\xff\x00\x01\x04"),
        with_uuid("uuid and a hangup in one packet", encode_hangup()),
        with_uuid("uuid then a reset", encode_audio(bytes(640), 16000), keep_open=0.2, reset=True),
        with_uuid("uuid then random bytes", bytes(rng.getrandbits(8) for _ in range(500)), keep_open=0.3),
        with_uuid("uuid, a DTMF digit, then a truncated header", encode_dtmf("5") + b"\x10\x01"),
        Hostile("audio before any UUID", encode_audio(bytes(320), 8000), False),
        Hostile("a truncated UUID", b"\x01\x00\x10" + bytes(7), False),
        Hostile("random bytes", bytes(rng.getrandbits(8) for _ in range(300)), False),
        Hostile("a UUID of the wrong length", b"\x01\x00\x04abcd", False),
    ]
    for i in range(20):  # fuzz: a valid call's stream with a few bytes mutated, cut anywhere
        h = Hostile(f"fuzzed stream {i}", b"", True)
        stream = bytearray(
            encode_uuid(h.call_id) + encode_audio(bytes(640), 16000) * 3 + encode_dtmf("7") + encode_hangup()
        )
        for _ in range(rng.randint(1, 4)):
            stream[rng.randrange(19, len(stream))] = rng.getrandbits(8)  # never the UUID: it is a call
        h.data = bytes(stream[: rng.randint(19, len(stream))])
        h.keep_open = 0.2
        peers.append(h)
    return peers


@dataclass
class Run:
    info: dict[str, Any]
    reports: list[CallReport]
    task: asyncio.Task[int]

    async def metric(self, name: str) -> float:
        async with aiohttp.ClientSession() as http, http.get(f"{self.info['metrics']}/metrics") as resp:
            text = await resp.text()
        return float(next(line.split()[-1] for line in text.splitlines() if line.startswith(name + " ")))


@pytest.fixture
async def dialplan_run() -> AsyncIterator[Run]:
    env = ivr_env(None, IVR_FLOWS=str(DATA), IVR_METRICS_LISTEN="127.0.0.1:0", IVR_SHUTDOWN_GRACE_SECONDS="0")
    settings = load_settings(environ=env, toml_path=None)
    info: dict[str, Any] = {}
    reports: list[CallReport] = []
    stop = asyncio.Event()
    task = asyncio.ensure_future(
        serve(settings, no_ari=True, stop=stop, ready=info.update, on_report=reports.append)
    )
    async with asyncio.timeout(20):
        while not info:
            assert not task.done(), task
            await asyncio.sleep(0.02)
    try:
        yield Run(info, reports, task)
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 30) == 0


async def attack(port: int, peer: Hostile) -> str:
    """Send ``peer``'s bytes in one packet; returns the address the server sees it from."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    host, local_port = writer.get_extra_info("sockname")[:2]
    writer.write(peer.data)
    await writer.drain()
    if peer.keep_open:
        await asyncio.sleep(peer.keep_open)
    if peer.reset:
        writer.transport.abort()
        return f"{host}:{local_port}"
    writer.close()
    try:
        async with asyncio.timeout(3):
            while await reader.read(65536):
                pass
    except (TimeoutError, ConnectionError):
        pass
    return f"{host}:{local_port}"


def steady(leg: CallerLeg, since: float) -> tuple[float, int]:
    """The longest gap between frames the good caller received after ``since``, and how many it got."""
    times = [t for t in leg.arrivals if t >= since]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    return (max(gaps) if gaps else 0.0), len(times)


async def test_hostile_peers_cost_only_themselves(
    dialplan_run: Run, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    port = int(dialplan_run.info["audiosocket"][1])
    legs = CallerLegs()
    good = [
        await legs.connect("127.0.0.1", port, uuid.uuid4(), "slin16", f"good-{i}") for i in range(GOOD_CALLS)
    ]
    await asyncio.gather(*(leg.wait_heard("Say sales or support") for leg in good))
    loop = asyncio.get_running_loop()
    started = loop.time()
    peers = hostile_peers(random.Random(1201))
    sources = await asyncio.gather(*(attack(port, p) for p in peers))
    await asyncio.sleep(0.5)
    elapsed = loop.time() - started

    assert not dialplan_run.task.done(), "the process stays up"
    for leg in good:
        gap, frames = steady(leg, started)
        assert gap < 1.0, f"a good call's frames stalled for {gap:.2f} s"
        assert frames >= 0.75 * elapsed / 0.020, (frames, elapsed)
        assert not leg.hangup_received

    records: Callable[[uuid.UUID], list[CallReport]] = lambda c: [  # noqa: E731
        r for r in dialplan_run.reports if r.call_id == str(c)
    ]
    async with asyncio.timeout(10):
        expected = sum(p.opens_call for p in peers)
        while sum(bool(records(p.call_id)) for p in peers if p.opens_call) < expected:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    for peer, source in zip(peers, sources, strict=True):
        named = [r for r in caplog.records if source in r.getMessage() and r.levelno >= logging.WARNING]
        if peer.opens_call:
            assert len(records(peer.call_id)) == 1, f"{peer.name}: one record"
            ended = [r for r in caplog.records if r.getMessage().startswith(f"call {peer.call_id}: ended (")]
            assert len(ended) == 1, f"{peer.name}: one 'ended' line"
        if peer.name in ("uuid and a hangup in one packet", "uuid then a reset") or (
            peer.name.startswith("fuzzed") and not named
        ):
            continue  # a clean hangup, a reset, or a mutation that left the stream valid: nothing wrong
        assert len(named) == 1, f"{peer.name}: one line naming {source}: {[r.getMessage() for r in named]}"
    assert not [r for r in caplog.records if r.exc_info], "no traceback for peer input"
    assert "Traceback" not in caplog.text

    assert await dialplan_run.metric("ivr_active_calls") == GOOD_CALLS, "the hostile calls all ended"
    for leg in good:
        await leg.close()
    async with asyncio.timeout(10):
        while await dialplan_run.metric("ivr_active_calls") != 0:  # noqa: ASYNC110 - the process's gauge
            await asyncio.sleep(0.05)


async def test_uuid_and_a_malformed_message_in_one_packet(
    dialplan_run: Run, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 12, item 1: the session ended before the first prompt, play() raised on it, the handler
    failed with a traceback, no record was written and the active-calls gauge never came down."""
    caplog.set_level(logging.INFO)
    port = int(dialplan_run.info["audiosocket"][1])
    calls = [Hostile("uuid + odd-length audio", b"", True) for _ in range(20)]
    for call in calls:
        call.data = encode_uuid(call.call_id) + b"\x10\x00\x03abc"
    sources = await asyncio.gather(*(attack(port, call) for call in calls))
    async with asyncio.timeout(10):
        while len(dialplan_run.reports) < len(calls):  # noqa: ASYNC110 - the sink's own list
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)
    assert sorted(r.call_id for r in dialplan_run.reports) == sorted(str(c.call_id) for c in calls)
    assert {r.outcome for r in dialplan_run.reports} == {"caller_hangup"}
    for source in sources:
        [line] = [r.getMessage() for r in caplog.records if source in r.getMessage()]
        assert "protocol error" in line
        assert "odd" in line or "length" in line, line
    assert not [r for r in caplog.records if r.exc_info]
    assert await dialplan_run.metric("ivr_active_calls") == 0
    assert not dialplan_run.task.done()
