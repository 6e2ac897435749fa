"""Reconnect backoff of the events WebSocket (defect 2): it starts over at every successful connect, so a
flapping link reconnects quickly every time, and failed connects back off with jitter up to about 2 s.

The delays checked are the ones the stream chose (its backoff sleeps are recorded and shortened), so the
test does not depend on how fast this machine is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ivr.ari import AriClient, EventStream
from ivr.sim import SimAsterisk
from tests.ari.conftest import APP, PASSWORD, USER, Collector, eventually


def more_than(stream: EventStream, connections: int) -> Callable[[], bool]:
    return lambda: stream.connections > connections


def recorded(stream: EventStream) -> list[float]:
    """Record every backoff delay the stream asks for, and sleep only a moment instead."""
    delays: list[float] = []
    original = stream._sleep

    async def sleep(seconds: float) -> None:
        delays.append(seconds)
        await original(min(seconds, 0.01))

    stream._sleep = sleep  # type: ignore[method-assign]
    return delays


async def test_a_flapping_link_reconnects_quickly_every_time(sim: SimAsterisk, client: AriClient) -> None:
    stream = EventStream(client, APP, Collector())  # the defaults ivr run uses
    delays = recorded(stream)
    stream.start()
    try:
        await stream.wait_connected(5)
        for _ in range(8):  # the link drops a few seconds apart, again and again
            connections = stream.connections
            await sim.kill_event_sockets(abort=True)
            await eventually(more_than(stream, connections), timeout=10)
    finally:
        await stream.close()
    assert len(delays) >= 8
    assert max(delays) <= stream.backoff_initial, f"no escalation after successful connects: {delays}"
    assert min(delays) > 0, "never a tight loop"


async def test_failed_connects_back_off_with_jitter_up_to_about_two_seconds() -> None:
    async with SimAsterisk(username=USER, password=PASSWORD) as sim:
        url = sim.base_url
    async with AriClient(url, USER, PASSWORD) as down:  # nothing listens there any more
        stream = EventStream(down, APP, Collector())
        delays = recorded(stream)
        stream.start()
        try:
            await eventually(lambda: len(delays) >= 12, timeout=20)
        finally:
            await stream.close()
    assert all(0 < d <= 2.0 for d in delays), delays
    assert delays[0] < 0.5, "the first retry comes soon"
    assert max(delays) > 1.0, "repeated failures back off"
    assert len(set(delays)) == len(delays), "jittered: many instances do not retry in lockstep"


async def test_a_server_that_accepts_and_drops_is_never_a_tight_loop(
    sim: SimAsterisk, client: AriClient
) -> None:
    stream = EventStream(client, APP, Collector())
    delays = recorded(stream)
    stream.start()
    try:
        await stream.wait_connected(5)
        for _ in range(5):
            connections = stream.connections
            await sim.kill_event_sockets(abort=False)
            await eventually(more_than(stream, connections), timeout=10)
            await asyncio.sleep(0)
    finally:
        await stream.close()
    assert all(d >= stream.backoff_initial / 2 for d in delays), delays
