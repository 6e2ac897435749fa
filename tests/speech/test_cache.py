"""Prompt cache: hits, misses, key sensitivity, atomic writes, no caching of interrupted prompts."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from pathlib import Path

import numpy as np
import pytest

from ivr.media.framing import frame_bytes
from ivr.speech.base import Synthesizer, VoiceIdentity
from ivr.speech.cache import CachingSynthesizer, PromptCache, cache_key
from ivr.speech.errors import StreamInterruptedError
from ivr.speech.openai_http import OpenAISpeechSynthesizer
from ivr.speech.retry import RetryPolicy
from tests.fakes.openai_server import Audio, FakeOpenAI, tone_pcm


class CountingSynth(Synthesizer):
    """Deterministic PCM whose content depends on text, voice and rate; counts provider calls."""

    engine = "counting"

    def __init__(self, fail_after: int | None = None) -> None:
        self.calls = 0
        self.fail_after = fail_after

    def identity(self, *, voice: str | None = None, instructions: str | None = None) -> VoiceIdentity:
        return VoiceIdentity(self.engine, "m1", voice or "v1", instructions or "")

    async def synthesize(
        self, text: str, *, rate: int, voice: str | None = None, instructions: str | None = None
    ) -> AsyncGenerator[bytes, None]:
        self.calls += 1
        seed = abs(hash((text, voice, instructions, rate))) % 2**32
        pcm = np.random.default_rng(seed).integers(-3000, 3000, rate // 2, dtype=np.int16).tobytes()
        size = frame_bytes(rate)
        for n, i in enumerate(range(0, len(pcm), size)):
            if self.fail_after is not None and n >= self.fail_after:
                raise StreamInterruptedError("broke", engine=self.engine)
            yield pcm[i : i + size]


def stored(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


async def play(s: CachingSynthesizer, text: str, rate: int = 8000, **kw: object) -> bytes:
    return b"".join([f async for f in s.synthesize(text, rate=rate, **kw)])  # type: ignore[arg-type]


async def test_miss_then_hit(tmp_path: Path):
    inner = CountingSynth()
    s = CachingSynthesizer(inner, PromptCache(tmp_path))
    first = await play(s, "Welcome")
    second = await play(s, "Welcome")
    assert first == second
    assert len(first) == 8000
    assert inner.calls == 1
    assert s.cache.hits == 1
    assert s.cache.misses == 1


async def test_hit_from_disk_in_a_new_process_cache(tmp_path: Path):
    inner = CountingSynth()
    first = await play(CachingSynthesizer(inner, PromptCache(tmp_path)), "Welcome", rate=16000)
    fresh = CachingSynthesizer(inner, PromptCache(tmp_path))  # empty memory LRU
    frames = [f async for f in fresh.synthesize("Welcome", rate=16000)]
    assert b"".join(frames) == first
    assert all(len(f) == 640 for f in frames)
    assert inner.calls == 1
    files = stored(tmp_path)
    assert len(files) == 1
    assert not files[0].name.startswith(".tmp-")


@pytest.mark.parametrize(
    ("kw", "text", "rate"),
    [
        ({}, "Welcome!", 8000),  # text
        ({}, "Welcome", 16000),  # rate
        ({"voice": "v2"}, "Welcome", 8000),  # voice
        ({"instructions": "slowly"}, "Welcome", 8000),  # instructions
    ],
)
async def test_key_sensitivity(tmp_path: Path, kw, text, rate):
    inner = CountingSynth()
    s = CachingSynthesizer(inner, PromptCache(tmp_path))
    await play(s, "Welcome")
    await play(s, text, rate, **kw)
    assert inner.calls == 2


def test_key_covers_engine_and_model():
    base = VoiceIdentity("e", "m", "v", "i")
    keys = {
        cache_key(base, "t", 8000),
        cache_key(VoiceIdentity("e2", "m", "v", "i"), "t", 8000),
        cache_key(VoiceIdentity("e", "m2", "v", "i"), "t", 8000),
    }
    assert len(keys) == 3
    assert cache_key(base, "t", 8000) == cache_key(VoiceIdentity("e", "m", "v", "i"), "t", 8000)


async def test_interrupted_prompt_is_not_stored(tmp_path: Path):
    inner = CountingSynth(fail_after=3)
    s = CachingSynthesizer(inner, PromptCache(tmp_path))
    with pytest.raises(StreamInterruptedError):
        await play(s, "Welcome")
    inner.fail_after = None
    await play(s, "Welcome")
    assert inner.calls == 2


async def test_barge_in_is_not_stored(tmp_path: Path):
    inner = CountingSynth()
    s = CachingSynthesizer(inner, PromptCache(tmp_path))
    async with contextlib.aclosing(s.synthesize("Welcome", rate=8000)) as gen:
        await anext(gen)
    assert not stored(tmp_path)
    await play(s, "Welcome")
    assert inner.calls == 2


async def test_uncacheable_prompts_bypass_the_cache(tmp_path: Path):
    inner = CountingSynth()
    s = CachingSynthesizer(inner, PromptCache(tmp_path))
    await play(s, "Your balance is 12 dollars", cacheable=False)
    await play(s, "Your balance is 12 dollars", cacheable=False)
    assert inner.calls == 2
    assert not stored(tmp_path)


async def test_prerender(tmp_path: Path):
    inner = CountingSynth()
    s = CachingSynthesizer(inner, PromptCache(tmp_path))
    assert await s.prerender("Main menu", rate=8000) is True
    assert await s.prerender("Main menu", rate=8000) is False
    assert inner.calls == 1


async def test_corrupt_temp_files_are_ignored(tmp_path: Path):
    inner = CountingSynth()
    cache = PromptCache(tmp_path)
    s = CachingSynthesizer(inner, cache)
    key = s.key("Welcome", rate=8000)
    cache.path(key).parent.mkdir(parents=True)
    (cache.path(key).parent / ".tmp-crashed.s16le").write_bytes(b"\1\2\3")
    await play(s, "Welcome")
    assert inner.calls == 1
    assert cache.path(key).stat().st_size == 8000


async def test_memory_lru_is_bounded(tmp_path: Path):
    inner = CountingSynth()
    cache = PromptCache(tmp_path, memory_bytes=20000)
    s = CachingSynthesizer(inner, cache)
    for word in ("one", "two", "three", "four"):
        await play(s, word)
    assert cache._mem_size <= 20000
    assert len(cache._mem) == 2


async def test_cached_openai_speech(fake: FakeOpenAI, source, tmp_path: Path):
    fake.speech.append(Audio(tone_pcm(0.5, 24000), chunks=(777, 5)))
    s = CachingSynthesizer(
        OpenAISpeechSynthesizer(source, policy=RetryPolicy(deadline=3)), PromptCache(tmp_path)
    )
    a = await play(s, "Hello", 8000)
    b = await play(s, "Hello", 8000)
    assert a == b
    assert len(a) == 8000
    assert len(fake.requests) == 1


async def test_damaged_entry_is_rendered_again(tmp_path: Path):
    inner = CountingSynth()
    cache = PromptCache(tmp_path)
    s = CachingSynthesizer(inner, cache)
    good = await play(s, "Welcome")
    key = s.key("Welcome", rate=8000)
    cache.path(key).write_bytes(b"\1\2\3")  # odd length: half a sample
    fresh = CachingSynthesizer(inner, PromptCache(tmp_path))
    assert await play(fresh, "Welcome") == good
    assert inner.calls == 2
