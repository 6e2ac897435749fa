"""Provider interfaces: speech-to-text (`Transcriber`) and text-to-speech (`Synthesizer`).

Audio everywhere is signed 16-bit little-endian mono PCM. Transcribers take an
utterance (or a live stream of frames) at the call rate, 8 or 16 kHz; synthesizers
produce audio at the rate the caller asks for, as exact 20 ms frames (the last one
possibly short), and yield the first frame as soon as the provider has produced
it, long before synthesis finishes.

Failures surface as :class:`ivr.speech.errors.ProviderError` (after the retry
layer gave up); the flow engine follows the step's error path on it.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

from ivr.media.framing import BytesLike

T = TypeVar("T")


@contextlib.asynccontextmanager
async def closing(it: AsyncIterator[T]) -> AsyncGenerator[AsyncIterator[T], None]:
    """``async with closing(synth.synthesize(...)) as frames:`` closes the stream on exit.

    Closing a synthesizer's iterator early (barge-in) cancels its provider request; this
    works for any async iterator, calling ``aclose()`` when it has one.
    """
    try:
        yield it
    finally:
        close = getattr(it, "aclose", None)
        if close is not None:
            await close()


@dataclass(frozen=True, slots=True)
class Transcript:
    """What a transcriber heard.

    ``confidence`` is in [0, 1] when the engine gives one (token log-probabilities,
    decoder scores), else ``None``. ``is_final`` is False for partial results
    streamed while the caller is still talking or the engine is still decoding.
    """

    text: str
    confidence: float | None = None
    is_final: bool = True


@dataclass(frozen=True, slots=True)
class VoiceIdentity:
    """Everything besides text and rate that changes a synthesizer's output: the prompt-cache key."""

    engine: str
    model: str
    voice: str
    instructions: str


class Transcriber(abc.ABC):
    """Speech to text. One instance may serve many concurrent calls unless it says otherwise."""

    engine: str = "?"
    live_input: bool = False
    """True when :meth:`transcribe_stream` works while the caller speaks (the call feeds it from the onset);
    False when the engine needs the whole utterance (then the call transcribes once the turn ends)."""

    @abc.abstractmethod
    async def transcribe(
        self,
        pcm: BytesLike,
        *,
        rate: int,
        hints: Sequence[str] = (),
        language: str | None = None,
    ) -> Transcript:
        """Transcribe one endpointed utterance (s16le mono at ``rate``); returns the final transcript.

        ``hints`` are the step's expected phrases (used as a vocabulary/prompt bias where the
        engine supports it); ``language`` is an ISO-639-1 code such as ``"en"``.
        """

    async def transcribe_stream(
        self,
        frames: AsyncIterable[BytesLike],
        *,
        rate: int,
        hints: Sequence[str] = (),
        language: str | None = None,
    ) -> AsyncIterator[Transcript]:
        """Transcribe a live utterance given as frames; yields partials, then exactly one final.

        The stream ends when ``frames`` ends (the endpointer decided the utterance is over).
        The default collects the frames and calls :meth:`transcribe`; engines that can
        work while the caller speaks override it.
        """
        buf = bytearray()
        async for frame in frames:
            buf += frame
        yield await self.transcribe(bytes(buf), rate=rate, hints=hints, language=language)

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release per-call resources (connections). Idempotent."""


class Synthesizer(abc.ABC):
    """Text to speech, streamed."""

    engine: str = "?"

    @abc.abstractmethod
    def identity(self, *, voice: str | None = None, instructions: str | None = None) -> VoiceIdentity:
        """The cache identity of a request with these options (defaults resolved)."""

    @abc.abstractmethod
    def synthesize(
        self,
        text: str,
        *,
        rate: int,
        voice: str | None = None,
        instructions: str | None = None,
    ) -> AsyncIterator[bytes]:
        """Speak ``text``; yield s16le mono PCM at ``rate`` in exact 20 ms frames (last may be short).

        ``instructions`` (tone, pace) come from flow settings written by the operator, never
        from the caller. Closing the iterator early (barge-in) cancels the provider request.
        """

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release per-call resources (connections). Idempotent."""
