"""The per-call dispatcher: ordering within a call, isolation between calls, routing of media channels."""

from __future__ import annotations

import asyncio
import uuid

from ivr.ari import AriClient, EventDispatcher, EventStream
from ivr.ari.models import Event, StasisStart, parse_event
from ivr.sim import SimAsterisk
from tests.ari.conftest import APP, AudioSocketServer, eventually


def _event(type_: str, channel_id: str, **fields: object) -> Event:
    chan = {"id": channel_id, "name": f"PJSIP/{channel_id}", "state": "Up"}
    return parse_event({"type": type_, "application": APP, "timestamp": "", "channel": chan, **fields})


async def test_a_blocked_call_does_not_delay_another() -> None:
    gate = asyncio.Event()
    seen: dict[str, list[str]] = {"a": [], "b": []}

    def new_call(start: StasisStart):
        call = start.channel.id

        async def handle(event: Event) -> None:
            seen[call].append(event.raw.get("digit") or event.type)
            if call == "a" and event.type == "StasisStart":
                await gate.wait()  # call a's handler is stuck (slow REST call, slow provider...)

        return handle

    dispatcher = EventDispatcher(new_call)
    try:
        dispatcher.dispatch(_event("StasisStart", "a", args=[]))
        dispatcher.dispatch(_event("ChannelDtmfReceived", "a", digit="1", duration_ms=100))
        dispatcher.dispatch(_event("StasisStart", "b", args=[]))
        for digit in "234":
            dispatcher.dispatch(_event("ChannelDtmfReceived", "b", digit=digit, duration_ms=100))
        await eventually(lambda: seen["b"] == ["StasisStart", "2", "3", "4"])
        assert seen["a"] == ["StasisStart"]
        gate.set()
        await eventually(lambda: seen["a"] == ["StasisStart", "1"])
    finally:
        await dispatcher.close()


async def test_handler_errors_do_not_kill_the_route_and_destroy_ends_it() -> None:
    handled: list[str] = []

    async def handle(event: Event) -> None:
        handled.append(event.type)
        if event.type == "StasisStart":
            raise RuntimeError("boom")

    dispatcher = EventDispatcher(lambda start: handle)
    dispatcher.dispatch(_event("StasisStart", "c", args=[]))
    route = dispatcher.routes["c"]
    dispatcher.dispatch(_event("ChannelDestroyed", "c", cause=16, cause_txt="Normal Clearing"))
    await asyncio.wait_for(route.task, 5.0)
    assert handled == ["StasisStart", "ChannelDestroyed"]
    assert dispatcher.routes == {}
    await dispatcher.close()


async def test_unrouted_events_and_new_call_declining() -> None:
    unrouted: list[str] = []

    async def on_unrouted(event: Event) -> None:
        unrouted.append(event.type)

    dispatcher = EventDispatcher(lambda start: None, unrouted=on_unrouted)
    dispatcher.dispatch(_event("StasisStart", "x", args=[]))
    dispatcher.dispatch(parse_event({"type": "BridgeDestroyed", "application": APP, "bridge": {"id": "b"}}))
    await eventually(lambda: unrouted == ["StasisStart", "BridgeDestroyed"])
    assert dispatcher.routes == {}
    await dispatcher.close()


async def test_stale_lists_routed_channels_that_are_gone() -> None:
    async def handle(event: Event) -> None:
        return None

    dispatcher = EventDispatcher(lambda start: handle)
    dispatcher.dispatch(_event("StasisStart", "a", args=[]))
    dispatcher.dispatch(_event("StasisStart", "b", args=[]))
    dispatcher.bind("media-a", "a")
    dispatcher.bind_bridge("bridge-a", "a")
    assert dispatcher.stale(["b", "media-a"]) == ["a"]
    assert dispatcher.stale([]) == ["a", "b", "media-a"]
    route = dispatcher.routes["a"]
    dispatcher.release("a")
    await asyncio.wait_for(route.task, 5.0)
    assert set(dispatcher.routes) == {"b"}
    await dispatcher.close()


async def test_end_to_end_media_channel_routed_to_its_call(
    sim: SimAsterisk, client: AriClient, audiosocket: AudioSocketServer
) -> None:
    """A call binds its media channel and bridge ids before creating them; a slow call stays isolated."""
    per_call: dict[str, list[str]] = {}
    new_calls: list[str] = []
    slow_gate = asyncio.Event()
    dispatcher: EventDispatcher

    def new_call(start: StasisStart):
        caller = start.channel.id
        new_calls.append(caller)
        per_call[caller] = []

        async def handle(event: Event) -> None:
            per_call[caller].append(f"{event.type}:{event.channel_ids[0] if event.channel_ids else ''}")
            if event.type == "StasisStart" and event.channel_ids[0] == caller:
                if start.args == ("slow",):
                    await slow_gate.wait()
                    return
                media_id = f"media-{caller}"
                dispatcher.bind(media_id, caller)
                dispatcher.bind_bridge(f"bridge-{caller}", caller)
                await client.create_bridge(bridge_id=f"bridge-{caller}")
                await client.external_media(
                    app=APP,
                    external_host=audiosocket.address,
                    format="slin16",
                    data=str(uuid.uuid4()),
                    channel_id=media_id,
                )
            elif event.type == "StasisStart":  # our media channel is in the app: bridge it with the caller
                await client.add_channel(f"bridge-{caller}", [caller, event.channel_ids[0]])

        return handle

    dispatcher = EventDispatcher(new_call)
    stream = EventStream(client, APP, dispatcher.dispatch, backoff_initial=0.05, backoff_max=0.2)
    stream.start()
    try:
        await stream.wait_connected(5.0)
        slow = await sim.place_call(args=["slow"])
        fast = await sim.place_call(args=["fast"])
        await eventually(lambda: f"ChannelEnteredBridge:media-{fast.id}" in per_call.get(fast.id, []))
        await sim.press_dtmf(fast.id, "5")
        await eventually(lambda: f"ChannelDtmfReceived:{fast.id}" in per_call[fast.id])
        assert new_calls == [slow.id, fast.id]  # the media channel's StasisStart was not a new call
        assert per_call[slow.id] == [f"StasisStart:{slow.id}"]  # the ChannelVarset before it is unrouted
        await sim.press_dtmf(slow.id, "9")
        slow_gate.set()
        await eventually(lambda: per_call[slow.id][-1] == f"ChannelDtmfReceived:{slow.id}")
        await client.destroy_bridge(f"bridge-{fast.id}")
        await eventually(lambda: per_call[fast.id][-1] == "BridgeDestroyed:")
        assert per_call[fast.id].count(f"ChannelLeftBridge:media-{fast.id}") == 1
    finally:
        await stream.close()
        await dispatcher.close()


async def test_reconcile_after_reconnect_finds_calls_that_ended_during_the_outage(
    sim: SimAsterisk, client: AriClient
) -> None:
    seen: dict[str, list[str]] = {}

    def new_call(start: StasisStart):
        seen[start.channel.id] = []

        async def handle(event: Event) -> None:
            seen[start.channel.id].append(event.type)

        return handle

    dispatcher = EventDispatcher(new_call)
    stale: list[str] = []
    reconciled = asyncio.Event()

    async def on_connected(reconnected: bool) -> None:
        if reconnected:
            live = {c.id for c in await client.list_channels()}
            stale.extend(dispatcher.stale(live))
            reconciled.set()

    stream = EventStream(
        client, APP, dispatcher.dispatch, on_connected=on_connected, backoff_initial=0.3, backoff_max=0.5
    )
    stream.start()
    try:
        await stream.wait_connected(5.0)
        gone = await sim.place_call()
        alive = await sim.place_call()
        await eventually(lambda: gone.id in dispatcher.routes and alive.id in dispatcher.routes)
        await sim.kill_event_sockets()
        await sim.hangup(gone.id)  # during the outage: its events are lost
        await asyncio.wait_for(reconciled.wait(), 5.0)
        assert stale == [gone.id]
        assert "ChannelDestroyed" not in seen[gone.id]
        await sim.press_dtmf(alive.id, "4")  # the surviving call keeps getting its events
        await eventually(lambda: "ChannelDtmfReceived" in seen[alive.id])
    finally:
        await stream.close()
        await dispatcher.close()
