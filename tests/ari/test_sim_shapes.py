"""The simulator's events have the same JSON shapes (keys and value types, nested) as a real Asterisk's."""

from __future__ import annotations

import re
import uuid
from typing import Any

from ivr.ari import AriClient
from ivr.sim import OriginateOutcome, SimAsterisk
from tests.ari.conftest import APP, AudioSocketServer, Collector, capture_events

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000$")


def shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value[:1]]  # element type of a (possibly empty) list
    return type(value).__name__


def shapes_equal(sim: Any, real: Any) -> bool:
    if isinstance(sim, dict) and isinstance(real, dict):
        return sim.keys() == real.keys() and all(shapes_equal(sim[k], real[k]) for k in sim)
    if isinstance(sim, list) and isinstance(real, list):
        return not sim or not real or shapes_equal(sim[0], real[0])
    return bool(sim == real)


async def _scenario(sim: SimAsterisk, client: AriClient, audiosocket: AudioSocketServer) -> None:
    call = await sim.place_call(args=["flow=pizza", "lang=en"])
    await client.answer(call.id)
    await client.create_bridge(bridge_id="b1")
    await client.external_media(
        app=APP,
        external_host=audiosocket.address,
        format="slin16",
        data=str(uuid.uuid4()),
        channel_id="media-1",
    )
    await sim.wait_for_event("StasisStart", "media-1")
    await client.add_channel("b1", [call.id, "media-1"])
    await client.set_variable(call.id, "IVR_X", "1")
    await sim.press_dtmf(call.id, "1", duration_ms=200)
    await sim.hangup(call.id)
    await client.hangup("media-1")
    await client.destroy_bridge("b1")
    sim.script_originate(OriginateOutcome("busy"))
    await client.originate("Local/100@outbound", app=APP, channel_id="out-1")
    await sim.wait_for_event("ChannelDestroyed", "out-1")
    await client.originate("Local/101@outbound", app=APP, app_args="a,b", channel_id="out-2")
    await sim.wait_for_event("StasisStart", "out-2")


async def test_simulated_events_match_the_real_capture(
    sim: SimAsterisk, client: AriClient, events: Collector, audiosocket: AudioSocketServer
) -> None:
    await _scenario(sim, client, audiosocket)
    await events.wait("StasisStart", "out-2")
    real_by_type: dict[str, list[Any]] = {}
    for raw in capture_events():
        real_by_type.setdefault(raw["type"], []).append(shape(raw))

    received = [dict(e.raw) for e in events.events]
    assert received == sim.event_log  # what the simulator logged is what went over the socket
    seen_types = {raw["type"] for raw in received}
    assert seen_types >= {
        "StasisStart",
        "StasisEnd",
        "ChannelDtmfReceived",
        "ChannelHangupRequest",
        "ChannelDestroyed",
        "ChannelStateChange",
        "ChannelEnteredBridge",
        "ChannelLeftBridge",
        "Dial",
        "ChannelVarset",
        "BridgeDestroyed",
    }
    for raw in received:
        candidates = real_by_type[raw["type"]]
        assert any(shapes_equal(shape(raw), real) for real in candidates), (
            f"{raw['type']} differs from the capture:\nsim:  {shape(raw)}\nreal: {candidates[0]}"
        )
        assert TIMESTAMP.match(raw["timestamp"])
        for key in ("channel", "peer"):
            if key in raw:
                assert TIMESTAMP.match(raw[key]["creationtime"])


async def test_rest_channel_and_bridge_objects_match_the_capture(
    sim: SimAsterisk, client: AriClient, events: Collector
) -> None:
    real = capture_events()
    real_channel = shape(next(r["channel"] for r in real if r["type"] == "StasisStart"))
    real_bridge = shape(next(r["bridge"] for r in real if r["type"] == "ChannelEnteredBridge"))
    call = await sim.place_call()
    channel = await client.request("GET", f"/channels/{call.id}")
    assert shapes_equal(shape(channel), real_channel)
    bridge = await client.request("POST", "/bridges", {"bridgeId": "b1", "type": "mixing"})
    assert shapes_equal(shape(bridge), real_bridge)
    assert (bridge["technology"], bridge["bridge_class"], bridge["creator"]) == (
        "simple_bridge",
        "stasis",
        "Stasis",
    )


def test_shape_comparison_catches_differences() -> None:
    real = shape({"a": 1, "b": {"c": "x"}, "l": ["s"]})
    assert shapes_equal(shape({"a": 2, "b": {"c": "y"}, "l": []}), real)
    assert not shapes_equal(shape({"a": "2", "b": {"c": "y"}, "l": []}), real)
    assert not shapes_equal(shape({"a": 2, "b": {"c": "y", "d": 1}, "l": []}), real)
    assert not shapes_equal(shape({"a": 2, "b": {"c": "y"}, "l": [1]}), real)
