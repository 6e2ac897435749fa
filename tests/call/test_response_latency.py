"""``response_latency_ms``: from the end of the caller's speech (not the endpointing decision, which comes
a trailing silence later) to the first frame of the IVR's reply, for every turn, including replies that a
hangup or a barge-in cuts short (defect 5)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ivr.sim.caller_leg import CallerVoice

from .conftest import DATA, Stack, close_stack, make_stack

pytestmark = pytest.mark.virtual_time

TRAILING_SILENCE_MS = 700  # latency.yaml's endpointing_silence_ms


@pytest.fixture
async def lstack() -> AsyncIterator[Stack]:
    s = await make_stack(DATA, "latency", ms_per_char=40)
    yield s
    await close_stack(s)


async def answer_sales(stack: Stack) -> tuple[str, CallerVoice]:
    """A caller says "sales" and hears the (long) reply start: the caller's id and leg."""
    caller = await stack.sim.place_call(args=["flow=latency"])
    leg = await stack.leg(caller.id)
    await leg.wait_heard("Say sales or support")
    await leg.say("sales")
    await leg.wait_heard("Sales it is", timeout=10)
    return caller.id, leg


async def test_measured_from_the_end_of_speech_every_turn(lstack: Stack) -> None:
    _, leg = await answer_sales(lstack)
    await leg.wait_heard_count("Say sales or support", 2, timeout=20)
    await leg.say("support")
    await leg.wait_heard("Support it is", timeout=10)
    await lstack.wait_ended(timeout=20)
    [report] = lstack.app.reports
    assert len(report.response_latency_ms) == 2, "one figure per turn"
    # The caller waited at least the trailing silence the endpointer needs before it decides.
    assert min(report.response_latency_ms) >= TRAILING_SILENCE_MS - 60, report.response_latency_ms


async def test_a_reply_cut_by_hangup_still_counts(lstack: Stack) -> None:
    caller_id, _ = await answer_sales(lstack)
    await lstack.sim.hangup(caller_id)  # in the middle of the long reply
    await lstack.wait_ended()
    [report] = lstack.app.reports
    assert report.outcome == "caller_hangup"
    assert len(report.response_latency_ms) == 1
    assert report.response_latency_ms[0] >= TRAILING_SILENCE_MS - 60


async def test_a_reply_cut_by_barge_in_still_counts(lstack: Stack) -> None:
    _, leg = await answer_sales(lstack)
    await leg.say("support")  # over the long reply, then over the next question: barge-in
    await leg.wait_heard("Support it is", timeout=10)
    await lstack.wait_ended(timeout=20)
    [report] = lstack.app.reports
    assert "support" in report.path
    assert len(report.response_latency_ms) == 2, report.response_latency_ms
