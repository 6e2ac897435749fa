"""The events WebSocket: typed delivery, reconnect with backoff, heartbeat, ApplicationReplaced, 401."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from ivr.ari import (
    ApplicationReplacedError,
    AriClient,
    ChannelDtmfReceived,
    EventStream,
    StasisStart,
    Unauthorized,
)
from ivr.sim import SimAsterisk
from tests.ari.conftest import APP, PASSWORD, USER, Collector, eventually


async def test_typed_events_in_order(sim: SimAsterisk, client: AriClient, events: Collector) -> None:
    call = await sim.place_call(args=["flow=pizza", "lang=en"])
    start = await events.wait("StasisStart", call.id)
    assert isinstance(start, StasisStart)
    assert start.args == ("flow=pizza", "lang=en")
    assert start.application == APP
    for digit in "12#":
        await sim.press_dtmf(call.id, digit, duration_ms=200)
    await sim.hangup(call.id)
    await events.wait("StasisEnd", call.id)
    digits = [e for e in events.events if isinstance(e, ChannelDtmfReceived)]
    assert [(d.digit, d.duration_ms) for d in digits] == [("1", 200), ("2", 200), ("#", 200)]
    assert events.types(call.id) == [
        "ChannelVarset",
        "StasisStart",
        "ChannelDtmfReceived",
        "ChannelDtmfReceived",
        "ChannelDtmfReceived",
        "ChannelHangupRequest",
        "StasisEnd",  # then nothing: the caller entered through Stasis() and is no longer subscribed
    ]


async def test_reconnects_after_the_socket_is_killed(sim: SimAsterisk, client: AriClient) -> None:
    collector = Collector()
    hooks: list[bool] = []
    hook_called = asyncio.Event()

    async def on_connected(reconnected: bool) -> None:
        hooks.append(reconnected)
        hook_called.set()

    stream = EventStream(
        client,
        APP,
        collector,
        on_connected=on_connected,
        backoff_initial=0.05,
        backoff_max=0.2,
        heartbeat=2.0,
    )
    stream.start()
    try:
        await stream.wait_connected(5.0)
        await asyncio.wait_for(hook_called.wait(), 5.0)
        for abort in (False, True):
            hook_called.clear()
            await sim.kill_event_sockets(abort=abort)
            await sim.wait_for(lambda: APP in sim.connected_apps, timeout=10.0)
            await asyncio.wait_for(hook_called.wait(), 5.0)
        assert hooks == [False, True, True]
        assert stream.connections == 3
        call = await sim.place_call()
        await collector.wait("StasisStart", call.id)
    finally:
        await stream.close()
    assert stream.task is not None
    assert stream.task.done()


async def test_heartbeat_detects_a_dead_peer(
    sim: SimAsterisk, client: AriClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ivr.ari.events")
    stream = EventStream(client, APP, Collector(), heartbeat=0.2, backoff_initial=0.05, backoff_max=0.2)
    stream.start()
    try:
        await stream.wait_connected(5.0)
        sim.freeze_event_sockets()  # the peer stops answering pings: nothing closes the TCP connection
        await sim.wait_for(lambda: stream.connections >= 2 and APP in sim.connected_apps, timeout=10.0)
        assert stream.connected
    finally:
        await stream.close()
    assert "No PONG" in caplog.text


async def test_application_replaced_stops_without_flapping(sim: SimAsterisk, client: AriClient) -> None:
    first_events, second_events = Collector(), Collector()
    first = EventStream(client, APP, first_events, backoff_initial=0.05, backoff_max=0.1)
    second = EventStream(client, APP, second_events, backoff_initial=0.05, backoff_max=0.1)
    first.start()
    await first.wait_connected(5.0)
    second.start()
    try:
        await second.wait_connected(5.0)
        first_task = first.task
        assert first_task is not None
        with pytest.raises(ApplicationReplacedError, match="taken over"):
            await asyncio.wait_for(first_task, 5.0)
        await first_events.wait("ApplicationReplaced")
        # Stays down: give a reconnecting client ample opportunity to steal the name back.
        await asyncio.sleep(0.5)
        assert first.connections == 1
        assert second.connections == 1
        assert second.connected
        call = await sim.place_call()
        await second_events.wait("StasisStart", call.id)
        assert "StasisStart" not in first_events.types()
    finally:
        await first.close()
        await second.close()


async def test_wrong_password_stops_without_retrying(sim: SimAsterisk) -> None:
    async with AriClient(sim.base_url, USER, "not-it") as bad:
        stream = EventStream(bad, APP, Collector(), backoff_initial=0.05, backoff_max=0.1)
        with pytest.raises(Unauthorized):
            await asyncio.wait_for(stream.run(), 5.0)
    assert sim.requests.count(("GET", "/ari/events")) == 1


async def test_waits_while_asterisk_is_down_then_connects(client: AriClient, sim: SimAsterisk) -> None:
    await sim.stop()
    stream = EventStream(client, APP, Collector(), backoff_initial=0.05, backoff_max=0.1)
    stream.start()
    try:
        await asyncio.sleep(0.3)
        assert not stream.connected
        assert stream.task is not None
        assert not stream.task.done()
        await sim.start()  # same port
        await stream.wait_connected(5.0)
        assert stream.connections == 1
    finally:
        await stream.close()


@pytest.fixture
async def flaky_server() -> AsyncIterator[tuple[str, list[float]]]:
    """Accepts the events WebSocket and closes it at once, recording when each attempt came."""
    attempts: list[float] = []

    async def handler(request: web.Request) -> web.WebSocketResponse:
        attempts.append(asyncio.get_running_loop().time())
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.close()
        return ws

    app = web.Application()
    app.router.add_get("/ari/events", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}", attempts
    await runner.cleanup()


async def test_accept_then_drop_is_retried_without_a_tight_loop(
    flaky_server: tuple[str, list[float]],
) -> None:
    url, attempts = flaky_server
    async with AriClient(url, USER, PASSWORD) as c:
        stream = EventStream(c, APP, Collector(), backoff_initial=0.05, backoff_max=0.4)
        stream.start()
        await asyncio.sleep(1.2)
        await stream.close()
    # Every connect succeeds, so the backoff starts over each time, but every wait is at least
    # backoff_initial / 2: a tight loop would make thousands of attempts.
    assert 2 <= len(attempts) <= 60
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert all(g >= 0.025 for g in gaps)


async def test_a_handshake_that_never_answers_times_out_and_is_retried() -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # reads nothing, answers nothing: a hung Asterisk

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with AriClient(f"http://127.0.0.1:{port}", USER, PASSWORD) as c:
            stream = EventStream(
                c, APP, Collector(), connect_timeout=0.2, backoff_initial=0.05, backoff_max=0.1
            )
            stream.start()
            try:
                await eventually(lambda: len(accepted) >= 2, timeout=10.0)
                assert not stream.connected
            finally:
                await stream.close()
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()
