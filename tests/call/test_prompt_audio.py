"""A prompt's parts play back to back as one stream; each cacheable part comes from the prompt cache on
its own (a reprompt's fixed prefix is synthesised once), a rendered part always from the provider."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from ivr.call.prompt_audio import prompt_audio
from ivr.flow.actions import Play, PromptPart
from ivr.speech.base import Synthesizer, VoiceIdentity
from ivr.speech.cache import CachingSynthesizer, PromptCache


class Counting(Synthesizer):
    engine = "counting"

    def __init__(self) -> None:
        self.asked: list[str] = []

    def identity(self, *, voice: str | None = None, instructions: str | None = None) -> VoiceIdentity:
        return VoiceIdentity(self.engine, "m", voice or "", instructions or "")

    async def synthesize(
        self, text: str, *, rate: int, voice: str | None = None, instructions: str | None = None
    ) -> AsyncIterator[bytes]:
        self.asked.append(text)
        yield text.encode().ljust(320, b"\0")[:320]


async def drain(source: object) -> bytes:
    assert not isinstance(source, bytes | bytearray | memoryview)
    return b"".join([chunk async for chunk in source])  # type: ignore[attr-defined]


async def test_parts_chain_and_only_fixed_parts_are_cached(tmp_path: Path) -> None:
    inner = Counting()
    synth = CachingSynthesizer(inner, PromptCache(tmp_path))
    play = Play.spoken(
        "q", [PromptPart("Sorry, I didn't hear anything.", True), PromptPart("Hi Ana, which day?", False)]
    )
    first = await drain(prompt_audio(synth, play, 8000))
    second = await drain(prompt_audio(synth, play, 8000))
    assert first == second
    assert first.startswith(b"Sorry, I didn't hear anything.")
    assert b"Hi Ana, which day?" in first[320:]
    assert inner.asked == ["Sorry, I didn't hear anything.", "Hi Ana, which day?", "Hi Ana, which day?"]
    assert not play.cacheable
    assert play.text == "Sorry, I didn't hear anything. Hi Ana, which day?"


async def test_a_single_part_prompt_is_one_stream(tmp_path: Path) -> None:
    inner = Counting()
    play = Play("say", "Welcome.", cacheable=True)
    assert await drain(prompt_audio(inner, play, 8000)) == b"Welcome.".ljust(320, b"\0")
    assert inner.asked == ["Welcome."]
