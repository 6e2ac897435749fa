"""Originate outcomes scripted in the simulator: answer, busy, no answer, ring then answer, cancel."""

from __future__ import annotations

import pytest

from ivr.ari import AriClient, ChannelDestroyed, Dial
from ivr.sim import OriginateOutcome, SimAsterisk, SimError
from tests.ari.conftest import APP, Collector


def _dialstatuses(events: Collector, channel_id: str) -> list[str]:
    return [e.dialstatus for e in events.events if isinstance(e, Dial) and e.peer.id == channel_id]


@pytest.mark.parametrize(
    ("outcome", "dialstatus", "cause", "cause_txt"),
    [
        ("busy", "BUSY", 17, "User busy"),
        ("noanswer", "NOANSWER", 19, "User alerting, no answer"),
        ("congestion", "CONGESTION", 34, "Circuit/channel congestion"),
    ],
)
async def test_unanswered_outcomes(
    sim: SimAsterisk,
    client: AriClient,
    events: Collector,
    outcome: str,
    dialstatus: str,
    cause: int,
    cause_txt: str,
) -> None:
    sim.script_originate(outcome, endpoint="PJSIP/*")
    chan = await client.originate("PJSIP/bob", app=APP, channel_id="out-1", timeout=30)
    assert chan.state == "Down"
    destroyed = await events.wait("ChannelDestroyed", "out-1")
    assert isinstance(destroyed, ChannelDestroyed)
    assert (destroyed.cause, destroyed.cause_txt) == (cause, cause_txt)
    assert _dialstatuses(events, "out-1") == ["", dialstatus]
    assert "StasisStart" not in events.types("out-1")


async def test_no_answer_after_the_originate_timeout(
    sim: SimAsterisk, client: AriClient, events: Collector
) -> None:
    sim.script_originate(OriginateOutcome("noanswer", delay=None))
    await client.originate("PJSIP/bob", app=APP, channel_id="out-2", timeout=1)
    destroyed = await events.wait("ChannelDestroyed", "out-2", timeout=5.0)
    assert isinstance(destroyed, ChannelDestroyed)
    assert destroyed.cause == 19


async def test_ring_until_answered(sim: SimAsterisk, client: AriClient, events: Collector) -> None:
    sim.script_originate(OriginateOutcome("ring"))
    await client.originate("PJSIP/bob", app=APP, app_args="flow=transfer", channel_id="out-3")
    await events.wait("Dial", "out-3")
    assert sim.channels["out-3"].state == "Down"
    await sim.answer_outbound("out-3")
    start = await events.wait("StasisStart", "out-3")
    assert start.raw["args"] == ["flow=transfer"]
    assert _dialstatuses(events, "out-3") == ["", "ANSWER"]
    with pytest.raises(SimError):
        await sim.answer_outbound("out-3")


async def test_hangup_while_ringing_cancels(sim: SimAsterisk, client: AriClient, events: Collector) -> None:
    sim.script_originate(OriginateOutcome("ring"))
    await client.originate("PJSIP/bob", app=APP, channel_id="out-4")
    await events.wait("Dial", "out-4")
    await client.hangup("out-4")
    await events.wait("ChannelDestroyed", "out-4")
    assert _dialstatuses(events, "out-4") == ["", "CANCEL"]
    assert "out-4" not in sim.channels


async def test_place_call_needs_a_listening_application(sim: SimAsterisk) -> None:
    with pytest.raises(SimError, match="not registered"):
        await sim.place_call(app="nobody")
