"""Whole calls over WebSocket media through the simulated Asterisk, which paces it like chan_websocket.

The app sends each prompt ahead; the simulator's 20 ms tick plays it out of a chan_websocket queue,
answers marks, flushes on FLUSH_MEDIA and forwards keys as DTMF_END. Everything runs in this process, on
the virtual clock: timings are exact, and a test cannot be made late by a busy machine.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from ivr.sim.ws_media import WebSocketMediaLeg

from .conftest import DATA, Stack, close_stack, make_stack

pytestmark = pytest.mark.virtual_time


@pytest.fixture
async def ws() -> AsyncIterator[Stack]:
    s = await make_stack(DATA, "menu", media="websocket")
    yield s
    await close_stack(s)


async def test_a_whole_call_over_websocket_media(ws: Stack) -> None:
    caller = await ws.sim.place_call(args=["flow=menu"], native_format="slin16")
    leg = await ws.leg(caller.id)
    assert isinstance(leg, WebSocketMediaLeg)
    assert leg.rate == 16000
    await leg.wait_heard("Say sales or support")
    await leg.say("support please")
    await leg.wait_heard("Support it is")
    await leg.wait_heard("Goodbye")
    await ws.wait_ended()
    [report] = ws.app.reports
    assert report.outcome == "hangup"
    assert report.path[:3] == ["hello", "main", "support"]
    assert report.response_latency_ms
    assert report.greeting_latency_ms is not None
    assert leg.error is None, "the app sent nothing chan_websocket would ignore"
    assert leg.stalls == 0
    ws.assert_clean()


def runs(arrivals: list[float]) -> list[tuple[float, float, int]]:
    """Prompts as the caller heard them: (first frame, last frame, frames) of each unbroken 20 ms run
    (nothing flows between prompts with WebSocket media)."""
    out: list[tuple[float, float, int]] = []
    for at in arrivals:
        if out and at - out[-1][1] <= 0.030:
            first, _, count = out[-1]
            out[-1] = (first, at, count + 1)
        else:
            out.append((at, at, 1))
    return out


async def test_dtmf_is_acted_on_once_though_it_arrives_twice(ws: Stack) -> None:
    caller = await ws.sim.place_call(args=["flow=menu"])
    leg = await ws.leg(caller.id)
    await leg.wait_heard("Say sales")
    await ws.sim.press_dtmf(caller.id, "1")  # ChannelDtmfReceived AND DTMF_END on the media socket
    await leg.wait_heard("Sales it is")
    await ws.wait_ended()
    [report] = ws.app.reports
    assert report.dtmf == ["1"]
    assert report.path[:3] == ["hello", "main", "sales"]
    ws.assert_clean()


async def test_no_input_timer_starts_when_asterisk_reports_the_prompt_played() -> None:
    """The whole question goes ahead at once, seconds before the caller has heard it; the no-input
    timer (1.5 s) starts from Asterisk's end mark, so the reprompt comes 1.5 s after the caller heard
    the question's last frame, not 1.5 s after it was sent (which would cut the question short).
    In virtual time, so the 1.5 s is the timer's own logic, not this machine's scheduling."""
    from ivr.call.report import TraceEvent

    trace: list[TraceEvent] = []
    s = await make_stack(DATA, "menu", media="websocket", ms_per_char=100, tracer=trace.append)
    try:
        caller = await s.sim.place_call(args=["flow=menu"])
        leg = await s.leg(caller.id)
        assert isinstance(leg, WebSocketMediaLeg)
        await leg.wait_heard("I did not hear you", timeout=30)
        _greeting, question, reprompt = runs(leg.arrivals)[:3]
        assert question[2] == 38 * 5, "the question (38 characters, 100 ms each) heard whole"
        assert leg.model.max_queue_length >= question[2] - 5, "it was sent ahead, not paced by the app"
        listen = next(t for t in trace if t.kind == "listen" and t.step == "main")
        assert question[1] < listen.at <= question[1] + 0.041, "listening began at Asterisk's end mark"
        waited = reprompt[0] - question[1]
        # Virtual time (the module's pytestmark): no wall clock in this figure. The timer's 1.5 s, then at
        # most two 20 ms ticks of the simulated Asterisk (plus a frame's rounding) before the reprompt.
        assert 1.5 <= waited <= 1.5 + 0.045, f"reprompt {waited:.3f} s after the question was heard"
        await s.sim.hangup(caller.id)
        await s.wait_ended()
        assert leg.stalls == 0
        s.assert_clean()
    finally:
        await close_stack(s)


async def test_barge_in_flushes_asterisks_queue_and_the_caller_hears_nothing_more_of_it() -> None:
    from ivr.call.report import TraceEvent

    trace: list[TraceEvent] = []
    s = await make_stack(DATA, "patient", media="websocket", ms_per_char=100, tracer=trace.append)
    try:
        caller = await s.sim.place_call(args=["flow=patient"])
        leg = await s.leg(caller.id)
        assert isinstance(leg, WebSocketMediaLeg)
        await leg.wait_heard("Say sales")
        await asyncio.sleep(0.5)  # well into a ~4 s prompt, most of it in Asterisk's queue
        queued = len(leg.model.queue)
        assert queued > 100
        await leg.say("sales", wait=False)
        await leg.wait_heard("Sales it is", timeout=10)
        [barge] = [t for t in trace if t.kind == "barge_in"]
        assert barge.step == "main"
        assert "FLUSH_MEDIA" in leg.model.commands
        after = [a for a in leg.arrivals if a > barge.at]
        reply = next(t for t in trace if t.kind == "prompt" and t.at > barge.at)
        cut = [a for a in after if a < reply.at]
        assert len(cut) <= 1, (
            f"{len(cut)} frames of the old prompt after the barge-in (at most the tick in flight)"
        )
        heard = [t for t in trace if t.kind == "heard"]
        assert heard[0].text == "sales", "the utterance was kept from its onset"
        await s.sim.hangup(caller.id)
        await s.wait_ended()
        s.assert_clean()
    finally:
        await close_stack(s)


async def test_the_caller_hanging_up_mid_prompt_leaves_nothing(ws: Stack) -> None:
    caller = await ws.sim.place_call(args=["flow=menu"])
    leg = await ws.leg(caller.id)
    await leg.wait_heard("Welcome")
    await ws.sim.hangup(caller.id)
    await ws.wait_ended()
    [report] = ws.app.reports
    assert report.outcome == "caller_hangup"
    await leg.wait_closed()
    ws.assert_clean()


async def test_asterisk_closing_the_media_socket_ends_the_call_with_one_record(ws: Stack) -> None:
    caller = await ws.sim.place_call(args=["flow=menu"])
    leg = await ws.leg(caller.id)
    assert isinstance(leg, WebSocketMediaLeg)
    await leg.wait_heard("Say sales")
    await leg.close()  # the media channel's socket goes (Asterisk side), the caller is still there
    await ws.wait_ended()
    [report] = ws.app.reports
    assert report.outcome in ("caller_hangup", "hangup", "error"), report.outcome
    assert caller.id in ws.sim.destroyed, "the app hung the caller up: no caller left without media"
    ws.assert_clean()


@pytest.mark.parametrize(
    ("default", "arg", "variable", "expected"),
    [
        ("audiosocket", "media=websocket", None, "websocket"),
        ("audiosocket", None, "websocket", "websocket"),
        ("websocket", "media=audiosocket", None, "audiosocket"),
        ("websocket", None, None, "websocket"),
        ("audiosocket", None, None, "audiosocket"),
        ("audiosocket", "media=carrier-pigeon", None, "audiosocket"),
    ],
)
async def test_the_transport_is_chosen_per_call(
    default: str, arg: str | None, variable: str | None, expected: str
) -> None:
    s = await make_stack(DATA, "menu", media=default)
    try:
        caller = await s.sim.place_call(
            args=["flow=menu", *([arg] if arg else [])],
            variables={"IVR_MEDIA": variable} if variable else None,
        )
        leg = await s.leg(caller.id)
        assert isinstance(leg, WebSocketMediaLeg) == (expected == "websocket")
        await leg.wait_heard("Say sales")
        await s.sim.press_dtmf(caller.id, "2")
        await leg.wait_heard("Support it is")
        await s.wait_ended()
        [report] = s.app.reports
        assert report.dtmf == ["2"]
        assert "media" not in report.variables, "media= picks the transport, it is no flow variable"
        s.assert_clean()
    finally:
        await close_stack(s)


async def test_an_endpoint_transfer_over_websocket_media_flushes_the_ringback() -> None:
    """The caller hears ringback from the IVR's media while the agent rings; on answer the ringback still
    queued in Asterisk is flushed and the media channel leaves: caller and agent talk, nothing is left."""
    from ivr.sim.ari_server import OriginateOutcome

    s = await make_stack(DATA, "transfer", media="websocket")
    try:
        s.sim.script_originate(OriginateOutcome("ring", delay=None), endpoint="PJSIP/agent")
        caller = await s.sim.place_call(args=["flow=transfer"])
        leg = await s.leg(caller.id)
        assert isinstance(leg, WebSocketMediaLeg)
        await leg.wait_heard("Press 1")
        await s.sim.press_dtmf(caller.id, "2")
        await s.sim.wait_for(lambda: any(c.kind == "outbound" for c in s.sim.channels.values()))
        agent_id = next(c.id for c in s.sim.channels.values() if c.kind == "outbound")
        heard_before = len(leg.heard)
        await asyncio.sleep(0.3)
        assert any(leg.heard[heard_before:]), "the caller hears ringback, not silence"
        assert len(leg.model.queue) > 100, "the ringback went ahead into Asterisk's queue"
        await s.sim.answer_outbound(agent_id)
        await s.sim.wait_for(lambda: not [c for c in s.sim.channels.values() if c.kind == "media"])
        assert "FLUSH_MEDIA" in leg.model.commands
        await s.sim.hangup(agent_id)
        await s.wait_ended()
        assert s.app.reports[0].outcome == "transferred"
        s.assert_clean()
    finally:
        await close_stack(s)
