"""No dead air: while the caller waits for us, the line never stays silent longer than the flow allows.

The caller waits from the end of their answer (or from the moment we asked something of a provider)
until our reply's first audio: through speech-to-text, a webhook, the LLM matcher and a prompt whose
text-to-speech has not produced audio yet. :class:`HoldLine` counts those waits; while any is open and
the silence reaches ``filler_after_ms`` (measured from the caller's last speech or our last sound), it
plays the flow's filler (rendered once per call, ahead, through the call's own synthesizer) or, when no
filler can be said (none set, or text-to-speech is the slow provider) and between fillers, a soft hold
tone made here (no provider involved), and it repeats until the wait ends. The reply, when its audio is
ready, clears whatever hold sound plays.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any

import numpy as np

from ivr.transport import PcmSource, Playout

log = logging.getLogger(__name__)

LEAD_S = 0.12
"""A hold sound starts this long before the silence limit: the transport needs a frame or two to start."""
TONE_DBFS = -30.0
TONE_NOTES_HZ = (523.25, 659.25)
TONE_NOTE_S = 0.2
FILLER_EVERY = 4
"""After the first filler, every FILLER_EVERY-th hold sound is the filler again (the others are tones)."""
FILLER_RENDER_S = 5.0
"""A filler not rendered within this long is given up for this call (the tone serves instead)."""


@functools.cache
def hold_tone(rate: int) -> bytes:
    """Two soft notes (-30 dBFS, 0.2 s each, faded in and out): audible, never mistaken for speech.

    Made once per rate and shared by every call (immutable bytes): not 13 KB and a numpy pass per call."""
    n = int(rate * TONE_NOTE_S)
    t = np.arange(n) / rate
    fade = np.minimum(1.0, np.minimum(t, TONE_NOTE_S - t) / 0.03)
    amplitude = 32768 * 10 ** (TONE_DBFS / 20) * math.sqrt(2)
    notes = [np.sin(2 * np.pi * f * t) * fade * amplitude for f in TONE_NOTES_HZ]
    return np.concatenate(notes).astype("<i2").tobytes()


class HoldLine:
    """One call's waits (see the module docstring).

    ``play(pcm)`` starts a sound on the call's transport (the runtime's own prompt start, so a hold sound
    counts as the first thing the caller hears back); ``render(text)`` gives a filler's audio stream.
    """

    def __init__(
        self,
        *,
        rate: int,
        play: Callable[[PcmSource], Playout],
        render: Callable[[str], Awaitable[PcmSource]],
        gap_ms: int,
        tone: bool,
        spawn: Callable[[Coroutine[Any, Any, Any], str], asyncio.Task[Any]],
    ) -> None:
        self._play = play
        self._render = render
        self._spawn = spawn
        self.gap_s = gap_ms / 1000
        self._tone = hold_tone(rate) if tone else None
        self._waits: list[tuple[float, str | None]] = []
        self._task: asyncio.Task[Any] | None = None
        self._sound_end = float("-inf")
        self._fillers: dict[str, bytes | None] = {}
        self._renders: dict[str, asyncio.Task[Any]] = {}
        self._count = 0
        self.sounds: list[str] = []
        """What each hold sound was ("filler" or "tone"), in order (for tests and traces)."""

    @contextlib.contextmanager
    def waiting(self, since: float, filler: str | None) -> Iterator[None]:
        """The caller waits, silent since ``since`` (loop time); ``filler`` is what to say (None: tones)."""
        entry = (since, filler)
        self._waits.append(entry)
        if filler and filler not in self._fillers and filler not in self._renders:
            self._renders[filler] = self._spawn(self._render_filler(filler), "filler")
        if self._task is None:
            self._count = 0
            self._task = self._spawn(self._run(), "hold")
        try:
            yield
        finally:
            self._waits.remove(entry)
            if not self._waits and self._task is not None:
                self._task.cancel()
                self._task = None

    @property
    def holding(self) -> bool:
        return bool(self._waits)

    async def _render_filler(self, text: str) -> None:
        try:
            async with asyncio.timeout(FILLER_RENDER_S):
                source = await self._render(text)
                self._fillers[text] = await _collect(source)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # TTS is down or slow: the tone serves instead
            log.info("filler %r not available (%s); hold tones instead", text, exc)
            self._fillers[text] = None
        finally:
            self._renders.pop(text, None)

    def _next_sound(self) -> tuple[str, bytes] | None:
        filler = self._waits[-1][1] if self._waits else None
        pcm = self._fillers.get(filler) if filler else None
        first_or_due = self._count == 0 or self._count % FILLER_EVERY == 0
        if pcm and (first_or_due or self._tone is None):
            return "filler", pcm
        if self._tone is not None:
            return "tone", self._tone
        return None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waits:
            quiet = max(max(since for since, _ in self._waits), self._sound_end)
            delay = quiet + self.gap_s - LEAD_S - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            sound = self._next_sound()
            if sound is None:
                return  # no filler can be said and the flow wants no tone
            kind, pcm = sound
            self._count += 1
            self.sounds.append(kind)
            playout = self._play(pcm)
            try:
                await playout.wait()
            finally:
                self._sound_end = loop.time()

    def close(self) -> None:
        """The call ended: nothing more to render (the tasks are the runtime's, cancelled with the call)."""
        self._waits.clear()


async def _collect(source: PcmSource) -> bytes:
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source)
    out = bytearray()
    it: AsyncIterator[bytes] = aiter(source)
    try:
        async for chunk in it:
            out += chunk
    finally:
        aclose = getattr(it, "aclose", None)
        if aclose is not None:
            await aclose()
    return bytes(out)
