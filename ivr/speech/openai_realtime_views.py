"""The :class:`Transcriber` and :class:`Synthesizer` views of an OpenAI Realtime session (one call each).

The flow and the registry see a call's speech through these two interfaces; both views share the one
:class:`~ivr.speech.openai_realtime_session.RealtimeSession` that creates them (what they need of it:
:class:`RealtimeSessionLike`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterable, Sequence
from typing import Protocol

from ivr.media.framing import BytesLike, frame_bytes
from ivr.speech.base import Synthesizer, Transcriber, Transcript, VoiceIdentity
from ivr.speech.openai_realtime_wire import ENGINE

log = logging.getLogger("ivr.speech.openai_realtime")  # the engine's log lines keep their logger's name


class RealtimeSessionLike(Protocol):
    """What the views need of the call's realtime session."""

    @property
    def rate(self) -> int: ...

    @property
    def voice(self) -> str: ...

    @property
    def model(self) -> str: ...

    def reading_instructions(self, instructions: str | None) -> str:
        """The instructions a prompt is read with (the session's own unless the step has some)."""

    def listen(
        self, frames: AsyncIterable[BytesLike], *, hints: Sequence[str] = (), language: str | None = None
    ) -> AsyncGenerator[Transcript, None]: ...

    def speak(self, text: str, *, instructions: str | None = None) -> AsyncGenerator[bytes, None]: ...

    async def aclose(self) -> None: ...


class RealtimeTranscriber(Transcriber):
    """The transcription view of a :class:`~ivr.speech.openai_realtime_session.RealtimeSession` (one call)."""

    engine = ENGINE
    live_input = True
    """The audio can go up the socket while the caller speaks (``transcribe_stream`` from the onset)."""

    def __init__(self, session: RealtimeSessionLike) -> None:
        self.session = session

    def _check(self, rate: int) -> None:
        if rate != self.session.rate:
            raise ValueError(f"this realtime session runs at {self.session.rate} Hz, not {rate} Hz")

    async def transcribe(
        self, pcm: BytesLike, *, rate: int, hints: Sequence[str] = (), language: str | None = None
    ) -> Transcript:
        final: Transcript | None = None
        async for t in self.transcribe_stream(_chunks(pcm, rate), rate=rate, hints=hints, language=language):
            final = t
        assert final is not None
        return final

    async def transcribe_stream(
        self,
        frames: AsyncIterable[BytesLike],
        *,
        rate: int,
        hints: Sequence[str] = (),
        language: str | None = None,
    ) -> AsyncGenerator[Transcript, None]:
        self._check(rate)
        async with contextlib.aclosing(
            self.session.listen(frames, hints=hints, language=language)
        ) as results:
            async for t in results:
                yield t

    async def aclose(self) -> None:
        await self.session.aclose()


class RealtimeSynthesizer(Synthesizer):
    """The speech view of a :class:`~ivr.speech.openai_realtime_session.RealtimeSession` (one call); the voice is fixed per session."""

    engine = ENGINE

    def __init__(self, session: RealtimeSessionLike) -> None:
        self.session = session

    def identity(self, *, voice: str | None = None, instructions: str | None = None) -> VoiceIdentity:
        s = self.session
        return VoiceIdentity(ENGINE, s.model, s.voice, s.reading_instructions(instructions))

    async def synthesize(
        self,
        text: str,
        *,
        rate: int,
        voice: str | None = None,
        instructions: str | None = None,
    ) -> AsyncGenerator[bytes, None]:
        if rate != self.session.rate:
            raise ValueError(f"this realtime session runs at {self.session.rate} Hz, not {rate} Hz")
        if voice is not None and voice != self.session.voice:
            log.warning(
                "realtime: the voice is fixed per session (%s); ignoring %s", self.session.voice, voice
            )
        async with contextlib.aclosing(self.session.speak(text, instructions=instructions)) as frames:
            async for frame in frames:
                yield frame

    async def aclose(self) -> None:
        await self.session.aclose()


async def _chunks(pcm: BytesLike, rate: int) -> AsyncGenerator[bytes, None]:
    size = frame_bytes(rate)
    view = memoryview(pcm)
    for i in range(0, len(view), size):
        yield bytes(view[i : i + size])
