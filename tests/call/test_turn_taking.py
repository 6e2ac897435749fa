"""Turn decisions in whole calls, in virtual time: the end-of-turn model, digit strings on silence, the
flow's per-step settings, backchannels over a prompt, and a prompt's own echo on the caller's line.

The caller's audio is the simulation's text carrier; the test transcriber reads it under another engine
name, so the call treats it as speech (echo gate, end-of-turn model). The end-of-turn model is a scripted
stand-in run on a real worker thread, as the runtime runs Smart Turn.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import pytest

from ivr.audiosocket.protocol import encode_audio, frame_bytes
from ivr.call.report import TraceEvent
from ivr.call.turn_models import TurnModels
from ivr.flow.model import FlowSettings
from ivr.media.smart_turn import SmartTurnModel, TurnModelExecutor
from ivr.media.vad_choice import VadChoice
from ivr.sim.caller_leg import PERIOD, CallerLeg, CallerLegs, CallerVoice
from ivr.speech.registry import CallSpeech
from ivr.speech.simulated import TextTranscriber, ToneSynthesizer

from .conftest import DATA, Stack, close_stack, make_stack

pytestmark = pytest.mark.virtual_time


class SpokenText(TextTranscriber):
    """Reads the carrier like ``sim-text``, but the call takes its audio for speech."""

    engine = "test-speech"


@dataclass
class ScriptedTurnModel:
    """Answers every end-of-turn check with ``probability``; counts the checks (thread-safe)."""

    probability_value: float
    checks: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def probability(self, pcm: bytes, rate: int) -> float:
        with self.lock:
            self.checks += 1
        return self.probability_value


def turn_models(model: ScriptedTurnModel | None) -> TurnModels:
    executor = TurnModelExecutor(cast(SmartTurnModel, model)) if model is not None else None
    return TurnModels(VadChoice("energy"), executor)


def speech(ms_per_char: float) -> Callable[[FlowSettings, int], CallSpeech]:
    def factory(settings: FlowSettings, rate: int) -> CallSpeech:
        return CallSpeech(SpokenText(), ToneSynthesizer(ms_per_char=ms_per_char, min_ms=100))

    return factory


@pytest.fixture
def trace() -> list[TraceEvent]:
    return []


async def start(
    trace: list[TraceEvent],
    model: ScriptedTurnModel | None,
    *,
    ms_per_char: float = 25,
    legs: CallerLegs | None = None,
) -> tuple[Stack, CallerVoice, str, TurnModels]:
    turns = turn_models(model)
    stack = await make_stack(
        DATA, "turns", speech=speech(ms_per_char), tracer=trace.append, turns=turns, legs=legs
    )
    caller = await stack.sim.place_call(args=["flow=turns"])
    leg = await stack.leg(caller.id)
    return stack, leg, caller.id, turns


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - the app's trace, no event to wait on
            await asyncio.sleep(0.01)


def kinds(trace: list[TraceEvent], kind: str) -> list[TraceEvent]:
    return [t for t in trace if t.kind == kind]


async def finish(stack: Stack, turns: TurnModels, caller_id: str) -> None:
    if caller_id in stack.sim.channels:
        await stack.sim.hangup(caller_id)
    await stack.wait_ended(timeout=20)
    await close_stack(stack)
    turns.close()


async def answer_after_prompt(trace: list[TraceEvent], leg: CallerVoice, text: str, count: int = 1) -> None:
    await until(lambda: len(kinds(trace, "listen")) >= count)
    await leg.say(text)


async def test_the_model_ends_a_finished_answer_at_the_first_pause(trace: list[TraceEvent]) -> None:
    model = ScriptedTurnModel(0.9)
    stack, leg, caller, turns = await start(trace, model)
    try:
        await answer_after_prompt(trace, leg, "sales")
        await until(lambda: bool(stack.app.reports) or any(t.step == "sales" for t in kinds(trace, "prompt")))
        await stack.wait_ended(timeout=20)
        [report] = stack.app.reports
        assert "sales" in report.path
        assert model.checks >= 1
        # min_silence_ms (200) plus a frame or two, instead of max_silence_ms (1500) or 700 ms of silence
        assert report.response_latency_ms[0] < 400, report.response_latency_ms
    finally:
        await finish(stack, turns, caller)


async def test_an_unfinished_answer_waits_for_max_silence(trace: list[TraceEvent]) -> None:
    model = ScriptedTurnModel(0.1)  # "not done yet" at every pause
    stack, leg, caller, turns = await start(trace, model)
    try:
        await answer_after_prompt(trace, leg, "sales")
        await stack.wait_ended(timeout=20)
        [report] = stack.app.reports
        assert "sales" in report.path
        assert model.checks >= 1
        assert 1450 <= report.response_latency_ms[0] < 1700, report.response_latency_ms
    finally:
        await finish(stack, turns, caller)


async def test_without_a_model_silence_alone_decides(trace: list[TraceEvent]) -> None:
    stack, leg, caller, turns = await start(trace, None)
    try:
        await answer_after_prompt(trace, leg, "sales")
        await stack.wait_ended(timeout=20)
        [report] = stack.app.reports
        assert 650 <= report.response_latency_ms[0] < 900, "endpointing_silence_ms (700) ends the turn"
    finally:
        await finish(stack, turns, caller)


async def test_digit_strings_end_on_silence_and_never_ask_the_model(trace: list[TraceEvent]) -> None:
    model = ScriptedTurnModel(0.99)  # would end "four one one two," at its first pause
    stack, leg, caller, turns = await start(trace, model)
    try:
        await answer_after_prompt(trace, leg, "card")
        await until(lambda: any(t.step == "card" for t in kinds(trace, "prompt")))
        checks_before = model.checks
        await answer_after_prompt(trace, leg, "four one one two", count=2)
        await stack.wait_ended(timeout=20)
        [report] = stack.app.reports
        assert report.variables.get("card") == "4112"
        assert model.checks == checks_before, "a digits capture never asks the end-of-turn model"
        assert report.response_latency_ms[-1] >= 1450, "digits_silence_ms (1500) ends a digit string"
    finally:
        await finish(stack, turns, caller)


async def test_a_step_can_turn_the_model_off(trace: list[TraceEvent]) -> None:
    model = ScriptedTurnModel(0.99)
    stack, leg, caller, turns = await start(trace, model)
    try:
        await answer_after_prompt(trace, leg, "support")
        await until(lambda: any(t.step == "quiet" for t in kinds(trace, "prompt")))
        checks_before = model.checks
        await answer_after_prompt(trace, leg, "sales", count=2)
        await stack.wait_ended(timeout=20)
        [report] = stack.app.reports
        assert report.path[-2:] == ["sales", "done"]
        assert model.checks == checks_before, "end_of_turn: {model: false} on the step"
        assert report.response_latency_ms[-1] >= 650
    finally:
        await finish(stack, turns, caller)


async def test_a_backchannel_over_the_prompt_pauses_it_and_it_plays_on(trace: list[TraceEvent]) -> None:
    stack, leg, caller, turns = await start(trace, None, ms_per_char=60)  # the question lasts ~3 s
    try:
        await until(lambda: bool(kinds(trace, "prompt")))
        await asyncio.sleep(1.0)
        heard_before = len(leg.heard)
        await leg.say("mm-hm")
        await until(lambda: bool(kinds(trace, "resumed")))
        [barge] = kinds(trace, "barge_in")
        [back] = kinds(trace, "backchannel")
        [resumed] = kinds(trace, "resumed")
        assert barge.at < back.at <= resumed.at
        await until(lambda: bool(kinds(trace, "listen")) and kinds(trace, "listen")[-1].at > resumed.at)
        size = frame_bytes(leg.rate)
        played = [
            leg.heard[i * size : (i + 1) * size] != bytes(size)
            for i, at in enumerate(leg.arrivals)
            if i * size >= heard_before
        ]
        times = [at for i, at in enumerate(leg.arrivals) if i * size >= heard_before]
        paused = [p for p, at in zip(played, times, strict=True) if barge.at + 0.03 < at < resumed.at - 0.01]
        after = [p for p, at in zip(played, times, strict=True) if at > resumed.at + 0.05]
        assert paused
        assert not any(paused), "the caller heard silence while the prompt was paused"
        assert any(after), "the rest of the prompt played after the backchannel"
        assert [t.step for t in kinds(trace, "step")] == ["main"], "the question is still being asked"
        await leg.say("sales")
        await stack.wait_ended(timeout=20)
        [report] = stack.app.reports
        assert "sales" in report.path
    finally:
        await finish(stack, turns, caller)


async def test_short_words_over_the_prompt_are_an_answer(trace: list[TraceEvent]) -> None:
    stack, leg, caller, turns = await start(trace, None, ms_per_char=60)
    try:
        await until(lambda: bool(kinds(trace, "prompt")))
        await asyncio.sleep(1.0)
        await leg.say("sales")
        await stack.wait_ended(timeout=20)
        [report] = stack.app.reports
        assert "sales" in report.path
        assert not kinds(trace, "resumed")
    finally:
        await finish(stack, turns, caller)


class EchoingLeg(CallerLeg):
    """A caller whose line carries the IVR's audio back (no echo cancellation): ``echo_db`` down, after
    ``delay_frames`` frames, mixed with whatever the caller says."""

    echo_db = -10.0
    delay_frames = 5

    async def _send(self) -> None:
        loop = asyncio.get_running_loop()
        size = frame_bytes(self.rate)
        gain = 10 ** (self.echo_db / 20)
        start_at = loop.time()
        n = 0
        try:
            while not self._writer.is_closing() and not self._closed.is_set():
                own = self._outgoing.popleft() if self._outgoing else bytes(size)
                if not self._outgoing:
                    self._spoken.set()
                index = len(self.heard) // size - self.delay_frames
                mixed = np.frombuffer(own, dtype="<i2").astype(np.float64)
                if index >= 0:
                    echo = np.frombuffer(bytes(self.heard[index * size : (index + 1) * size]), dtype="<i2")
                    mixed = mixed + echo.astype(np.float64) * gain
                frame = np.clip(mixed, -32768, 32767).astype("<i2").tobytes()
                self._writer.write(encode_audio(frame, self.rate))
                self.sent += frame
                n += 1
                await asyncio.sleep(max(0.0, start_at + n * PERIOD - loop.time()))
        except (ConnectionError, OSError):
            pass
        finally:
            self._outgoing.clear()
            self._spoken.set()


class EchoingLegs(CallerLegs):
    async def connect(self, host: str, port: int, session: Any, fmt: str, channel_id: str) -> CallerLeg:
        from ivr.audiosocket.protocol import encode_uuid, rate_for_format

        reader, writer = await asyncio.open_connection(host, port)
        writer.write(encode_uuid(session))
        await writer.drain()
        leg = EchoingLeg(reader, writer, channel_id, rate_for_format(fmt))
        self.legs[channel_id] = leg
        return leg


async def test_the_prompts_own_echo_never_barges_in(trace: list[TraceEvent]) -> None:
    stack, leg, caller, turns = await start(trace, None, ms_per_char=60, legs=EchoingLegs())
    try:
        await until(lambda: bool(kinds(trace, "listen")), timeout=20)  # the question played to its end
        assert not kinds(trace, "barge_in"), "echo 10 dB down was taken for the caller"
        await leg.say("sales")
        await stack.wait_ended(timeout=20)
        [report] = stack.app.reports
        assert "sales" in report.path, "the caller is still heard over the echo's tail"
    finally:
        await finish(stack, turns, caller)


async def test_without_the_echo_gate_the_same_echo_barges_in(trace: list[TraceEvent]) -> None:
    """The control for the test above: the simulation's own text audio keeps today's static echo guard."""

    def sim_speech(settings: FlowSettings, rate: int) -> CallSpeech:
        return CallSpeech(TextTranscriber(), ToneSynthesizer(ms_per_char=60, min_ms=100))

    stack = await make_stack(DATA, "turns", speech=sim_speech, tracer=trace.append, legs=EchoingLegs())
    caller = await stack.sim.place_call(args=["flow=turns"])
    try:
        await until(lambda: bool(kinds(trace, "barge_in")) or bool(kinds(trace, "listen")), timeout=20)
        assert kinds(trace, "barge_in"), "the static guard lets this echo through"
    finally:
        await stack.sim.hangup(caller.id)
        await stack.wait_ended(timeout=20)
        await close_stack(stack)
