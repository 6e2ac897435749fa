"""Whole calls through the simulated Asterisk: ARI events, externalMedia, AudioSocket, flow, teardown."""

from __future__ import annotations

import asyncio

import pytest

from ivr.audiosocket import AudioSocketSession
from ivr.transport import discard_audio

from .conftest import Stack

pytestmark = pytest.mark.virtual_time


async def test_spoken_menu_choice_end_to_end(stack: Stack) -> None:
    caller = await stack.sim.place_call(args=["flow=menu"], native_format="slin16")
    leg = await stack.leg(caller.id)
    assert leg.rate == 16000
    await leg.wait_heard("Say sales or support")
    await leg.say("support please")
    await leg.wait_heard("Support it is")
    await leg.wait_heard("Goodbye")
    await stack.wait_ended()
    [report] = stack.app.reports
    assert report.outcome == "hangup"
    assert report.flow == "menu"
    assert report.response_latency_ms, "latency from end of speech to first prompt frame is measured"
    assert report.greeting_latency_ms is not None
    assert stack.sim.destroyed[caller.id].hangup_cause == 16
    assert leg.error is None, "the app sent Asterisk only audio and hangup messages"
    stack.assert_clean()


async def test_g711_caller_gets_8k_media(stack: Stack) -> None:
    caller = await stack.sim.place_call(args=["flow=menu"], native_format="ulaw")
    leg = await stack.leg(caller.id)
    assert leg.rate == 8000
    await leg.wait_heard("Welcome")
    await stack.sim.hangup(caller.id)
    await stack.wait_ended()
    assert stack.app.reports[0].outcome == "caller_hangup"
    stack.assert_clean()


@pytest.mark.parametrize(
    ("native", "rate"),
    [
        ("ulaw", 8000),
        ("alaw", 8000),
        ("gsm", 8000),
        ("slin", 8000),
        ("ulaw|g722", 8000),
        ("g722", 16000),
        ("slin16", 16000),
        ("slin32", 16000),
        ("slin44", 16000),
        ("slin48", 16000),
        ("slin96", 16000),
        ("slin192", 16000),  # a Local channel's native format: wideband, not 8 kHz (defect 1)
        ("opus", 16000),
    ],
)
async def test_media_format_follows_the_callers_native_rate(stack: Stack, native: str, rate: int) -> None:
    """Narrowband callers get ``slin``, every wider one ``slin16`` (what the speech engines use)."""
    caller = await stack.sim.place_call(args=["flow=menu"], native_format=native)
    leg = await stack.leg(caller.id)
    assert leg.rate == rate
    await leg.wait_heard("Welcome")
    await stack.sim.hangup(caller.id)
    await stack.wait_ended()
    stack.assert_clean()


async def test_dtmf_from_ari_only_never_counted_twice(stack: Stack) -> None:
    caller = await stack.sim.place_call(args=["flow=menu"])
    leg = await stack.leg(caller.id)
    await leg.wait_heard("Say sales")
    await stack.sim.press_dtmf(caller.id, "1")  # arrives as ChannelDtmfReceived AND as 0x03 on the socket
    await leg.wait_heard("Sales it is")
    await stack.wait_ended()
    [report] = stack.app.reports
    assert report.dtmf == ["1"]
    assert not any("I did not hear" in t for t in leg.heard_texts())
    stack.assert_clean()


async def test_caller_hangs_up_mid_prompt(stack: Stack) -> None:
    caller = await stack.sim.place_call(args=["flow=menu"])
    leg = await stack.leg(caller.id)
    await leg.wait_heard("Welcome")
    await stack.sim.hangup(caller.id)
    await stack.wait_ended()
    assert stack.app.reports[0].outcome == "caller_hangup"
    stack.assert_clean()


async def test_no_input_reprompts_then_ends(stack: Stack) -> None:
    caller = await stack.sim.place_call(args=["flow=menu"])
    leg = await stack.leg(caller.id)
    await leg.wait_heard("I did not hear you", timeout=10)
    await stack.wait_ended(timeout=15)
    assert leg.heard_texts() == [
        "Welcome to the test line.",
        "Say sales or support, or press 1 or 2.",
        "I did not hear you.",  # the handler's own reprompt, then listening again
        "Goodbye.",
    ]
    stack.assert_clean()


async def test_concurrent_calls_do_not_cross_talk(stack: Stack) -> None:
    callers = [await stack.sim.place_call(args=["flow=patient"]) for _ in range(20)]
    legs = [await stack.leg(c.id) for c in callers]
    await asyncio.gather(*(leg.wait_heard("Say sales") for leg in legs))
    for i, (caller, leg) in enumerate(zip(callers, legs, strict=True)):
        if i % 2:
            await leg.say("sales", wait=False)
        else:
            await stack.sim.press_dtmf(caller.id, "2")
    await stack.wait_ended(count=20, timeout=30)
    for i, leg in enumerate(legs):
        texts = leg.heard_texts()
        assert ("Sales it is." in texts) == bool(i % 2)
        assert ("Support it is." in texts) == (not i % 2)
    stack.assert_clean()


async def test_barge_in_stops_the_prompt_within_a_frame_and_keeps_the_utterance() -> None:
    from ivr.call.report import TraceEvent

    from .conftest import DATA, close_stack, make_stack

    trace: list[TraceEvent] = []
    s = await make_stack(DATA, "patient", ms_per_char=100, tracer=trace.append)  # prompts of several seconds
    try:
        caller = await s.sim.place_call(args=["flow=patient"])
        leg = await s.leg(caller.id)
        await leg.wait_heard("Say sales")
        await asyncio.sleep(0.5)  # well into a ~4 s prompt
        await leg.say("sales", wait=False)
        await leg.wait_heard("Sales it is", timeout=10)
        [barge] = [t for t in trace if t.kind == "barge_in"]
        assert barge.step == "main"
        heard = [t for t in trace if t.kind == "heard"]
        assert heard[0].text == "sales", "the utterance was kept from its onset (pre-roll)"
        # The prompt's audio stopped at once: between the barge-in and the next prompt only silence.
        next_prompt = next(t for t in trace if t.kind == "prompt" and t.at > barge.at)
        frames_after = [a for a in leg.arrivals if barge.at + 0.025 < a < next_prompt.at - 0.005]
        assert frames_after, "silence frames keep flowing"
        first = leg.arrivals.index(frames_after[0])
        size = 640
        for i in range(first, first + len(frames_after)):
            assert leg.heard[i * size : (i + 1) * size] == bytes(size), "prompt audio after the barge-in"
        await s.sim.hangup(caller.id)
        await s.wait_ended()
        s.assert_clean()
    finally:
        await close_stack(s)


async def test_speech_interrupts_a_barge_in_able_statement() -> None:
    from ivr.call.report import TraceEvent

    from .conftest import DATA, close_stack, make_stack

    trace: list[TraceEvent] = []
    s = await make_stack(DATA, "patient", ms_per_char=200, tracer=trace.append)  # "Welcome..." lasts 5 s
    try:
        caller = await s.sim.place_call(args=["flow=patient"])
        leg = await s.leg(caller.id)
        await leg.wait_heard("Welcome")
        await asyncio.sleep(0.3)
        await leg.say("hello there", wait=False)
        async with asyncio.timeout(5):
            while not any(t.kind == "barge_in" for t in trace):  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        [barge] = [t for t in trace if t.kind == "barge_in"]
        assert barge.step == "hello"
        # Short speech pauses the prompt; its words (not a backchannel) then move the say step on.
        async with asyncio.timeout(5):
            while len([t for t in trace if t.kind == "prompt"]) < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        assert [t.step for t in trace if t.kind == "prompt"][:2] == ["hello", "main"], "the say step moved on"
        await s.sim.hangup(caller.id)
        await s.wait_ended()
        s.assert_clean()
    finally:
        await close_stack(s)


async def test_audio_after_the_call_ended_is_let_go_not_counted_as_dropped(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the end of a call's runtime and its media closing (the ARI teardown, slow under load), the
    caller's frames still arrive: they are discarded, never queued and counted as a slow consumer's loss."""
    sessions: list[AudioSocketSession] = []
    real = AudioSocketSession.on_audio

    def on_audio(self: AudioSocketSession, sink: object) -> None:
        if self not in sessions:
            sessions.append(self)
        real(self, sink)  # type: ignore[arg-type]

    monkeypatch.setattr(AudioSocketSession, "on_audio", on_audio)
    caller = await stack.sim.place_call(args=["flow=menu"], native_format="slin16")
    leg = await stack.leg(caller.id)
    await leg.wait_heard("Welcome")
    await stack.sim.hangup(caller.id)
    await stack.wait_ended()
    [session] = sessions
    assert session.inbound.sink is discard_audio
    for _ in range(200):  # 4 s of audio arriving after the end
        session.inbound.put_audio(16000, bytes(640))
    assert session.dropped_audio == 0
    assert session.inbound.get_nowait() is None or session.closed
