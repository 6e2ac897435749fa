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


class Long(Counting):
    async def synthesize(
        self, text: str, *, rate: int, voice: str | None = None, instructions: str | None = None
    ) -> AsyncIterator[bytes]:
        self.asked.append(text)
        for i in range(50):  # 1 s of frames
            yield bytes([i + 1]) * 320


async def test_calls_playing_a_cached_prompt_get_the_cache_s_own_bytes(tmp_path: Path) -> None:
    """A prompt the cache holds in memory is handed over as that very object, to every call: no stream,
    no per-call copy (the transport frames it by offset)."""
    cache = PromptCache(tmp_path)
    synth = CachingSynthesizer(Long(), cache)
    play = Play("say", "Welcome to the bench.", cacheable=True)
    first = await drain(prompt_audio(synth, play, 8000))  # the first call renders and stores it
    a = prompt_audio(synth, play, 8000)
    b = prompt_audio(CachingSynthesizer(Long(), cache), play, 8000)  # another call's engines, same cache
    assert isinstance(a, bytes)
    assert a is b, "the same object for every call"
    assert a is cache.peek(synth.key("Welcome to the bench.", rate=8000))
    assert a == first
    assert prompt_audio(synth, play, 16000) is not a, "another rate is another entry (streamed first)"


async def test_cached_parts_of_a_longer_prompt_are_yielded_whole(tmp_path: Path) -> None:
    cache = PromptCache(tmp_path)
    inner = Long()
    synth = CachingSynthesizer(inner, cache)
    prefix = PromptPart("Sorry, once more.", True)
    await drain(prompt_audio(synth, Play.spoken("q", [prefix]), 8000))
    stored = cache.peek(synth.key(prefix.text, rate=8000))
    assert stored is not None
    play = Play.spoken("q", [prefix, PromptPart("Ana, which day?", False)])
    source = prompt_audio(synth, play, 8000)
    assert not isinstance(source, bytes | bytearray | memoryview)
    chunks = [chunk async for chunk in source]
    assert chunks[0] is stored, "the cached prefix is the cache's object, in one piece"
    assert len(chunks) == 1 + 50, "the rendered part streams frame by frame"
    assert inner.asked == ["Sorry, once more.", "Ana, which day?"]


async def test_a_prompt_not_in_memory_streams_from_the_cache_on_disk(tmp_path: Path) -> None:
    synth = CachingSynthesizer(Long(), PromptCache(tmp_path))
    play = Play("say", "From disk.", cacheable=True)
    await drain(prompt_audio(synth, play, 8000))
    fresh = CachingSynthesizer(Long(), PromptCache(tmp_path))  # a new process: the memory LRU is empty
    streamed = prompt_audio(fresh, play, 8000)
    assert not isinstance(streamed, bytes)
    assert len(await drain(streamed)) == 50 * 320
    assert isinstance(prompt_audio(fresh, play, 8000), bytes), "in memory from then on"
