"""Transfers (dialplan and endpoint), and faults during calls: ARI socket drops, media loss, setup failures."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from ivr.call.transfer import ringback
from ivr.call.waiting import hold_tone
from ivr.sim.ari_server import OriginateOutcome, SimAsterisk
from ivr.sim.caller_leg import CallerLeg

from .conftest import DATA, Stack, close_stack, make_stack

pytestmark = pytest.mark.virtual_time


@pytest.fixture
async def tstack():
    s = await make_stack(DATA, "transfer")
    yield s
    await close_stack(s)


async def test_transfer_to_dialplan_continues_with_variables_and_cleans_up(tstack: Stack) -> None:
    caller = await tstack.sim.place_call(args=["flow=transfer"])
    leg = await tstack.leg(caller.id)
    await leg.wait_heard("Press 1")
    await tstack.sim.press_dtmf(caller.id, "1")
    await tstack.wait_ended()
    chan = tstack.sim.channels[caller.id]
    assert chan.continued_to == ("support", "100", 1)
    assert chan.variables["IVR_ACCOUNT"] == "12345"
    assert chan.variables["QUEUE"] == "billing"
    assert tstack.app.reports[0].outcome == "transferred"
    assert not chan.destroyed, "the caller now belongs to the dialplan: not hung up"
    tstack.assert_clean()


async def test_transfer_to_endpoint_answered_bridges_caller_and_agent(tstack: Stack) -> None:
    tstack.sim.script_originate(OriginateOutcome("ring", delay=None), endpoint="PJSIP/agent")
    caller = await tstack.sim.place_call(args=["flow=transfer"])
    leg = await tstack.leg(caller.id)
    await leg.wait_heard("Press 1")
    await tstack.sim.press_dtmf(caller.id, "2")
    await tstack.sim.wait_for(lambda: any(c.kind == "outbound" for c in tstack.sim.channels.values()))
    agent_id = next(c.id for c in tstack.sim.channels.values() if c.kind == "outbound")
    heard_before = len(leg.heard)
    await asyncio.sleep(0.3)
    assert len(leg.heard) > heard_before
    assert any(leg.heard[heard_before:]), "the caller hears ringback, not silence"
    await tstack.sim.answer_outbound(agent_id)
    await tstack.sim.wait_for(
        lambda: (
            (b := tstack.sim.channels[caller.id].bridge_id) is not None
            and set(tstack.sim.bridges[b].channels) == {caller.id, agent_id}
        )
    )
    # the IVR's media channel is dropped once the caller talks to the agent
    await tstack.sim.wait_for(lambda: not [c for c in tstack.sim.channels.values() if c.kind == "media"])
    await tstack.sim.hangup(agent_id)  # the agent hangs up: the caller is hung up too, nothing left
    await tstack.wait_ended()
    assert tstack.app.reports[0].outcome == "transferred"
    assert caller.id in tstack.sim.destroyed
    tstack.assert_clean()


@pytest.mark.parametrize(("outcome", "cause"), [("busy", 17), ("noanswer", 19)])
async def test_transfer_to_endpoint_unanswered_follows_the_failure_branch(
    tstack: Stack, outcome: str, cause: int
) -> None:
    tstack.sim.script_originate(OriginateOutcome(outcome, delay=0.1), endpoint="PJSIP/agent")
    caller = await tstack.sim.place_call(args=["flow=transfer"])
    leg = await tstack.leg(caller.id)
    await leg.wait_heard("Press 1")
    await tstack.sim.press_dtmf(caller.id, "2")
    await leg.wait_heard("The agent is not available")
    await tstack.wait_ended()
    report = tstack.app.reports[0]
    assert report.outcome == "hangup"
    assert "agent_failed" in report.path
    assert not [c for c in tstack.sim.channels.values() if c.kind == "outbound"]
    tstack.assert_clean()


async def test_ari_socket_drops_and_returns_during_a_call(stack: Stack) -> None:
    caller = await stack.sim.place_call(args=["flow=patient"])  # waits long enough for the reconnect
    leg = await stack.leg(caller.id)
    await leg.wait_heard("Say sales")
    assert stack.app.stream is not None
    connections = stack.app.stream.connections
    await stack.sim.kill_event_sockets(abort=True)
    async with asyncio.timeout(10):
        while stack.app.stream.connections <= connections:  # noqa: ASYNC110 - client-side counter
            await asyncio.sleep(0.05)
    await stack.sim.press_dtmf(caller.id, "2")  # events flow again on the new socket
    await leg.wait_heard("Support it is")
    await stack.wait_ended()
    stack.assert_clean()


async def test_caller_gone_during_ari_outage_is_cleaned_up_after_reconnect(stack: Stack) -> None:
    caller = await stack.sim.place_call(args=["flow=patient"])
    leg = await stack.leg(caller.id)
    await leg.wait_heard("Say sales")
    stack.sim.freeze_event_sockets()
    await stack.sim.hangup(caller.id)  # its events are lost with the dead socket
    await stack.wait_ended(timeout=15)  # heartbeat notices, reconnect reconciles
    assert stack.app.reports[0].outcome == "caller_hangup"
    stack.assert_clean()


async def test_media_socket_loss_ends_the_call_cleanly(stack: Stack) -> None:
    caller = await stack.sim.place_call(args=["flow=menu"])
    leg = await stack.leg(caller.id)
    await leg.wait_heard("Say sales")
    assert isinstance(leg, CallerLeg)
    leg._writer.transport.abort()  # the media connection dies (RST)
    await stack.wait_ended()
    assert caller.id in stack.sim.destroyed, "the caller is hung up, not left in silence"
    stack.assert_clean()


async def test_external_media_failure_ends_the_call_with_the_step_named() -> None:
    s = await make_stack(DATA, "menu", advertise="127.0.0.1:1")  # nothing listens there: 500
    try:
        caller = await s.sim.place_call(args=["flow=menu"])
        await s.wait_ended()
        [report] = s.app.reports
        assert report.outcome == "error"
        assert "externalMedia" in report.reason
        assert caller.id in s.sim.destroyed
        s.assert_clean()
    finally:
        await close_stack(s)


async def test_calls_over_the_limit_get_congestion_not_silence() -> None:
    s = await make_stack(DATA, "menu", max_calls=1)
    try:
        first = await s.sim.place_call(args=["flow=menu"])
        leg = await s.leg(first.id)
        await leg.wait_heard("Welcome")
        second = await s.sim.place_call(args=["flow=menu"])
        await s.sim.wait_for(lambda: second.id in s.sim.destroyed)
        assert s.sim.destroyed[second.id].hangup_cause == 34
        await s.sim.hangup(first.id)
        await s.wait_ended(count=2)
        assert sorted(r.outcome for r in s.app.reports) == ["busy", "caller_hangup"]
        s.assert_clean()
    finally:
        await close_stack(s)


async def test_max_call_duration_hangs_up() -> None:
    s = await make_stack(DATA, "patient", max_call_seconds=1.0)
    try:
        caller = await s.sim.place_call(args=["flow=patient"])
        await s.leg(caller.id)
        await s.wait_ended(timeout=10)
        [report] = s.app.reports
        assert (report.outcome, report.reason) == ("error", "max call duration")
        assert caller.id in s.sim.destroyed
        s.assert_clean()
    finally:
        await close_stack(s)


async def test_a_call_stopped_twice_during_its_teardown_still_leaves_the_app(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The caller hangs up during set-up (the call's task is cancelled, its teardown starts) and the app
    closes while that teardown still waits on Asterisk (a second cancel). The teardown finishes in the
    background, and the call then leaves the app's table: before, it stayed there for good."""

    released = asyncio.Event()

    async def stuck(self: SimAsterisk, request: web.Request) -> web.Response:
        await released.wait()
        raise web.HTTPServiceUnavailable(text="gone")

    real_destroy = SimAsterisk._h_destroy_bridge

    async def slow_destroy(self: SimAsterisk, request: web.Request) -> web.Response:
        await asyncio.sleep(2.0)
        return await real_destroy(self, request)

    monkeypatch.setattr(SimAsterisk, "_h_external_media", stuck)  # set-up stuck after the bridge
    monkeypatch.setattr(SimAsterisk, "_h_destroy_bridge", slow_destroy)
    stack = await make_stack(DATA, "menu", step_timeout=3600.0)
    try:
        caller = await stack.sim.place_call(native_format="slin16")
        await stack.sim.wait_for(lambda: bool(stack.sim.bridges), 5)
        await stack.sim.hangup(caller.id)  # teardown starts: destroying the bridge takes 2 s
        await asyncio.sleep(0.5)
        assert caller.id in stack.app.calls
        # aborts the call again while its teardown runs, which first waits for the stuck externalMedia
        # request to settle (its REST timeout, 10 s) so that the media channel's DELETE cannot overtake it
        async with asyncio.timeout(15):
            await stack.app.close()
        await asyncio.sleep(3.0)  # the teardown's own end
        assert not stack.app.calls
        [report] = stack.app.reports
        assert report.outcome == "caller_hangup"
    finally:
        released.set()
        await close_stack(stack)


def test_hold_and_ring_tones_are_made_once_per_rate() -> None:
    assert hold_tone(16000) is hold_tone(16000)
    assert len(hold_tone(8000)) * 2 == len(hold_tone(16000))
    assert ringback(8000) is ringback(8000)
