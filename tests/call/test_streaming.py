"""Streaming end to end (issue 14, item 3): the caller's answer goes up to a live transcriber while they
speak, so only a commit is left when the turn ends; a long prompt starts playing while the rest of it is
still being synthesised."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest

from ivr.call.report import TraceEvent
from ivr.call.speech import registry_factory
from ivr.flow.model import FlowSettings
from ivr.speech.base import Synthesizer, VoiceIdentity
from ivr.speech.registry import CallSpeech, SpeechRegistry
from ivr.speech.simulated import TextTranscriber
from tests.fakes.openai_server import FakeOpenAI

from .conftest import DATA, close_stack, make_stack

pytestmark = pytest.mark.virtual_time


async def until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - the app's trace
            await asyncio.sleep(0.01)


async def test_realtime_hears_the_answer_while_the_caller_speaks(
    api: tuple[FakeOpenAI, dict[str, str]],
) -> None:
    fake, env = api
    fake.realtime.transcript = "sales"
    registry = SpeechRegistry(env=env)
    trace: list[TraceEvent] = []
    speech = registry_factory(registry, default_stt="openai-realtime", default_tts="openai-speech")
    stack = await make_stack(DATA, "deadair", speech=speech, tracer=trace.append)
    try:
        caller = await stack.sim.place_call(args=["flow=deadair"])
        leg = await stack.leg(caller.id)
        await until(lambda: any(t.kind == "listen" for t in trace))
        await leg.say("sales")  # returns once the last frame of it was sent
        appends = [e for e in fake.ws_events if e.get("type") == "input_audio_buffer.append"]
        commits = [e for e in fake.ws_events if e.get("type") == "input_audio_buffer.commit"]
        assert appends, "the answer streamed up while the caller was speaking"
        assert not commits, "the turn is not over yet (300 ms of silence to come)"
        await stack.wait_ended(timeout=20)
        [report] = stack.app.reports
        assert report.path[:2] == ["main", "sales"]
        assert report.stt_ms
        assert report.stt_ms[0] < 100, "after the turn ended, only the commit was left"
    finally:
        await close_stack(stack)
        await registry.aclose()


class Sentences(Synthesizer):
    """Speaks one 0.5 s frame run per sentence, each taking ``sentence_s`` (real time) to make: a stand-in
    for an engine that works sentence by sentence (piper does). Records when the last sentence was made."""

    engine = "test-sentences"

    def __init__(self, sentence_s: float) -> None:
        self.sentence_s = sentence_s
        self.finished_at: float | None = None

    def identity(self, *, voice: str | None = None, instructions: str | None = None) -> VoiceIdentity:
        return VoiceIdentity(self.engine, "", "", "")

    async def synthesize(
        self, text: str, *, rate: int, voice: str | None = None, instructions: str | None = None
    ) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        frame = (b"\x00\x10\x00\xf0" * (rate // 100))[: rate // 50 * 2]
        for _sentence in [s for s in text.split(".") if s.strip()]:
            await loop.run_in_executor(None, time.sleep, self.sentence_s)  # the model's work, in real time
            for _ in range(25):
                yield frame
        self.finished_at = loop.time()


async def test_a_long_prompt_plays_while_its_later_sentences_are_made() -> None:
    synth = Sentences(sentence_s=0.15)

    def speech(settings: FlowSettings, rate: int) -> CallSpeech:
        return CallSpeech(TextTranscriber(), synth)

    trace: list[TraceEvent] = []
    stack = await make_stack(DATA, "longprompt", speech=speech, tracer=trace.append)
    try:
        caller = await stack.sim.place_call(args=["flow=longprompt"])
        leg = await stack.leg(caller.id)
        await stack.wait_ended(timeout=30)
        assert synth.finished_at is not None
        size = leg.rate // 50 * 2
        first_audio = next(
            at for i, at in enumerate(leg.arrivals) if leg.heard[i * size : (i + 1) * size] != bytes(size)
        )
        assert first_audio < synth.finished_at - 0.5, "the first sentence played while the rest were made"
    finally:
        await close_stack(stack)
