"""A prompt's audio: its parts synthesised one after another as one stream.

The engine sends a prompt as parts (a reprompt's prefix, the question, each option of a dynamic menu),
each cacheable on its own. They play back to back as one playback: one barge-in stops all of them, and a
cached part starts within a frame while a rendered one streams from the provider after it. Parts the
prompt cache holds in memory are handed over as the cache's own ``bytes`` objects, shared by every call.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from ivr.flow.actions import Play, PromptPart
from ivr.speech.base import Synthesizer, closing
from ivr.speech.cache import CachingSynthesizer
from ivr.speech.errors import DeadlineExceededError
from ivr.transport import PcmSource


def _in_memory(synth: Synthesizer, part: PromptPart, action: Play, rate: int) -> bytes | None:
    """The part's whole PCM when the prompt cache holds it in memory (shared, never copied)."""
    if not part.cacheable or not isinstance(synth, CachingSynthesizer):
        return None
    return synth.cached(part.text, rate=rate, voice=action.voice, instructions=action.tts_instructions)


async def _whole(pcm: bytes) -> AsyncIterator[bytes]:
    yield pcm


def _part(synth: Synthesizer, part: PromptPart, action: Play, rate: int) -> AsyncIterator[bytes]:
    pcm = _in_memory(synth, part, action, rate)
    if pcm is not None:
        return _whole(pcm)
    if isinstance(synth, CachingSynthesizer):
        return synth.synthesize(
            part.text,
            rate=rate,
            voice=action.voice,
            instructions=action.tts_instructions,
            cacheable=part.cacheable,
        )
    return synth.synthesize(part.text, rate=rate, voice=action.voice, instructions=action.tts_instructions)


def prompt_audio(synth: Synthesizer, action: Play, rate: int) -> PcmSource:
    """The PCM of a spoken ``action`` at ``rate``: every part in order, as one source.

    A one-part prompt the cache holds in memory is returned as that very ``bytes`` object (no task, no
    stream, no copy: the transport frames it by offset); parts in memory inside a longer prompt are
    yielded whole, by reference, and the others stream from the synthesizer.
    """
    parts = action.segments or (PromptPart(action.text or "", action.cacheable),)
    if len(parts) == 1:
        pcm = _in_memory(synth, parts[0], action, rate)
        return pcm if pcm is not None else _part(synth, parts[0], action, rate)

    async def chained() -> AsyncIterator[bytes]:
        for part in parts:
            async with closing(_part(synth, part, action, rate)) as frames:
                async for chunk in frames:
                    yield chunk

    return chained()


async def first_audio(source: PcmSource, timeout: float, *, engine: str) -> PcmSource:
    """``source`` once its first audio is there (read ahead of the transport, so the wait for it can be
    filled and bounded): a stream that gives nothing within ``timeout`` is a provider error."""
    if isinstance(source, bytes | bytearray | memoryview):
        return source
    it = aiter(source)
    try:
        async with asyncio.timeout(timeout):
            first = await anext(it)
    except StopAsyncIteration:
        return b""
    except TimeoutError:
        await _aclose(it)
        raise DeadlineExceededError(f"no audio within {timeout:g} s", engine=engine) from None
    except BaseException:
        await _aclose(it)
        raise

    async def chained() -> AsyncIterator[bytes]:
        try:
            yield first
            async for chunk in it:
                yield chunk
        finally:
            await _aclose(it)

    return chained()


async def _aclose(it: AsyncIterator[bytes]) -> None:
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()
