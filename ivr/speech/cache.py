"""On-disk prompt cache: static prompts are synthesised once and replayed from disk.

The key is a SHA-256 over (engine, model, voice, instructions, text, rate) and a
format version, so any change of voice, model, delivery instructions, wording or
call rate is a different entry. Entries are raw s16le mono PCM at the call rate,
written atomically (temporary file in the same directory, ``fsync``, ``os.replace``):
a crash or a concurrent writer never leaves a truncated prompt behind, and
readers see either the old entry or the new one.

A hit starts within one frame: the first 20 ms frame is produced from the first
read of the file, and recently used prompts are kept in a small in-memory LRU so
that a hit costs no disk I/O at all. An entry in memory is one ``bytes`` object
that every call playing the prompt shares (:meth:`CachingSynthesizer.cached`):
calls never copy it. Only complete syntheses are stored; a prompt interrupted by
barge-in or by a provider error is not.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections import OrderedDict
from collections.abc import AsyncGenerator
from pathlib import Path

from ivr.media.framing import frame_bytes
from ivr.speech.base import Synthesizer, VoiceIdentity, closing

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
SUFFIX = ".s16le"


def cache_key(identity: VoiceIdentity, text: str, rate: int) -> str:
    """Stable hex key of one prompt rendering."""
    payload = json.dumps(
        {
            "v": FORMAT_VERSION,
            "engine": identity.engine,
            "model": identity.model,
            "voice": identity.voice,
            "instructions": identity.instructions,
            "text": text,
            "rate": rate,
        },
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class PromptCache:
    """A directory of rendered prompts plus an in-memory LRU of up to ``memory_bytes``."""

    def __init__(self, directory: str | os.PathLike[str], *, memory_bytes: int = 16 * 1024 * 1024) -> None:
        self.directory = Path(directory)
        self.memory_bytes = memory_bytes
        self._mem: OrderedDict[str, bytes] = OrderedDict()
        self._mem_size = 0
        self.hits = 0
        self.misses = 0

    def path(self, key: str) -> Path:
        return self.directory / key[:2] / (key + SUFFIX)

    def _remember(self, key: str, pcm: bytes) -> None:
        if len(pcm) > self.memory_bytes:
            return
        old = self._mem.pop(key, None)
        if old is not None:
            self._mem_size -= len(old)
        self._mem[key] = pcm
        self._mem_size += len(pcm)
        while self._mem_size > self.memory_bytes:
            _, evicted = self._mem.popitem(last=False)
            self._mem_size -= len(evicted)

    def _read(self, key: str) -> bytes | None:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            return None

    def _write(self, key: str, pcm: bytes) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=SUFFIX, dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(pcm)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def peek(self, key: str) -> bytes | None:
        """The entry if it is in memory (no disk I/O, no copy: the very object every caller shares)."""
        pcm = self._mem.get(key)
        if pcm is not None:
            self._mem.move_to_end(key)
            self.hits += 1
        return pcm

    async def get(self, key: str) -> bytes | None:
        """The stored PCM, or None. Memory first, then disk (in a worker thread)."""
        pcm = self._mem.get(key)
        if pcm is not None:
            self._mem.move_to_end(key)
            self.hits += 1
            return pcm
        pcm = await asyncio.to_thread(self._read, key)
        if pcm is None:
            self.misses += 1
            return None
        self.hits += 1
        self._remember(key, pcm)
        return pcm

    async def contains(self, key: str) -> bool:
        return key in self._mem or await asyncio.to_thread(self.path(key).is_file)

    async def put(self, key: str, pcm: bytes) -> None:
        """Store atomically (worker thread) and remember in memory."""
        await asyncio.to_thread(self._write, key, pcm)
        self._remember(key, pcm)


class CachingSynthesizer(Synthesizer):
    """Wraps a synthesizer with a :class:`PromptCache`.

    ``synthesize(..., cacheable=True)`` is for prompts without template variables (the
    flow engine knows); rendered prompts with caller data pass ``cacheable=False`` and
    go straight to the provider, so no caller data is written to disk.
    """

    def __init__(self, inner: Synthesizer, cache: PromptCache) -> None:
        self.inner = inner
        self.cache = cache
        self.engine = inner.engine

    def identity(self, *, voice: str | None = None, instructions: str | None = None) -> VoiceIdentity:
        return self.inner.identity(voice=voice, instructions=instructions)

    def key(self, text: str, *, rate: int, voice: str | None = None, instructions: str | None = None) -> str:
        return cache_key(self.identity(voice=voice, instructions=instructions), text, rate)

    def cached(
        self, text: str, *, rate: int, voice: str | None = None, instructions: str | None = None
    ) -> bytes | None:
        """The prompt's whole PCM if the cache holds it in memory, else None (then :meth:`synthesize`).

        Every call playing the prompt gets the same ``bytes`` object: the player frames it by offset, so
        a prompt in memory costs the calls that play it no copy."""
        pcm = self.cache.peek(self.key(text, rate=rate, voice=voice, instructions=instructions))
        return pcm if pcm and not len(pcm) & 1 else None

    async def synthesize(
        self,
        text: str,
        *,
        rate: int,
        voice: str | None = None,
        instructions: str | None = None,
        cacheable: bool = True,
    ) -> AsyncGenerator[bytes, None]:
        if not cacheable:
            async with closing(
                self.inner.synthesize(text, rate=rate, voice=voice, instructions=instructions)
            ) as frames:
                async for frame in frames:
                    yield frame
            return
        key = self.key(text, rate=rate, voice=voice, instructions=instructions)
        pcm = await self.cache.get(key)
        if pcm is not None and (len(pcm) & 1 or not pcm):
            log.warning("prompt cache: ignoring a damaged entry %s (%d bytes)", key[:12], len(pcm))
            pcm = None
        if pcm is not None:
            size = frame_bytes(rate)
            view = memoryview(pcm)
            for i in range(0, len(pcm), size):
                yield bytes(view[i : i + size])
            return
        parts: list[bytes] = []
        async with closing(
            self.inner.synthesize(text, rate=rate, voice=voice, instructions=instructions)
        ) as frames:
            async for frame in frames:
                parts.append(frame)
                yield frame
        # Reached only when the provider finished: interrupted prompts are not stored.
        await self.cache.put(key, b"".join(parts))

    async def prerender(
        self, text: str, *, rate: int, voice: str | None = None, instructions: str | None = None
    ) -> bool:
        """Fill the cache for one prompt (``ivr prerender``); returns False if it was already there."""
        key = self.key(text, rate=rate, voice=voice, instructions=instructions)
        if await self.cache.contains(key):
            return False
        async with contextlib.aclosing(
            self.synthesize(text, rate=rate, voice=voice, instructions=instructions)
        ) as it:
            async for _ in it:
                pass
        return True

    async def aclose(self) -> None:
        await self.inner.aclose()
