"""Speech-to-text for one answer: streamed while the caller speaks where the engine takes live audio.

A transcriber with ``live_input`` (OpenAI Realtime: the audio goes up the call's socket as it comes) gets
the answer frame by frame from its onset, so when the turn ends only the commit is left and the final
transcript arrives a round trip later. Other engines get the whole answer at the end (an HTTP upload, or
offline Whisper, which reads a whole utterance). Every request has a deadline: a provider that hangs takes
the flow's error path, it never leaves the caller in silence for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any

from ivr.speech.base import Transcriber, Transcript
from ivr.speech.errors import DeadlineExceededError, ProviderError

STT_DEADLINE_S = 12.0
"""Longest a transcription may take (a backstop over the providers' own deadlines: 8 s with retries)."""


def takes_live_audio(transcriber: Transcriber) -> bool:
    return bool(getattr(transcriber, "live_input", False))


class LiveTranscription:
    """One answer streamed to a live transcriber; ``push`` per frame (cheap), ``finish`` at the turn's end."""

    def __init__(
        self,
        transcriber: Transcriber,
        *,
        rate: int,
        hints: Sequence[str],
        language: str | None,
        spawn: Callable[[Coroutine[Any, Any, Any], str], asyncio.Task[Any]],
    ) -> None:
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._transcriber = transcriber
        self._rate = rate
        self._hints = tuple(hints)
        self._language = language
        self.partial = ""
        """The latest partial transcript (for traces)."""
        self._task: asyncio.Task[Transcript | ProviderError] = spawn(self._run(), "stt-live")

    def push(self, pcm: bytes) -> None:
        if pcm:
            self._queue.put_nowait(pcm)

    async def _frames(self) -> AsyncIterator[bytes]:
        while (frame := await self._queue.get()) is not None:
            yield frame

    async def _run(self) -> Transcript | ProviderError:
        final: Transcript | None = None
        try:
            stream = self._transcriber.transcribe_stream(
                self._frames(), rate=self._rate, hints=self._hints, language=self._language
            )
            async with contextlib.aclosing(stream) as results:  # type: ignore[type-var]
                async for t in results:
                    if t.is_final:
                        final = t
                    else:
                        self.partial = t.text
        except ProviderError as exc:
            return exc  # handed to finish(): a failed stream is the answer's failure, not the task's
        if final is None:
            return ProviderError("the live transcription ended without a transcript", engine="stt")
        return final

    async def finish(self, timeout: float = STT_DEADLINE_S) -> Transcript:
        """The turn is over: the final transcript (raises the stream's ProviderError)."""
        self._queue.put_nowait(None)
        try:
            async with asyncio.timeout(timeout):
                result = await asyncio.shield(self._task)
        except TimeoutError:
            self.cancel()
            raise DeadlineExceededError(
                f"no transcript within {timeout:g} s", engine=self._transcriber.engine
            ) from None
        if isinstance(result, ProviderError):
            raise result
        return result

    def cancel(self) -> None:
        self._task.cancel()


async def transcribe(
    transcriber: Transcriber,
    pcm: bytes,
    *,
    rate: int,
    hints: Sequence[str],
    language: str | None,
    timeout: float = STT_DEADLINE_S,
) -> Transcript:
    """One whole answer, under a deadline."""
    try:
        async with asyncio.timeout(timeout):
            return await transcriber.transcribe(pcm, rate=rate, hints=hints, language=language)
    except TimeoutError:
        raise DeadlineExceededError(
            f"no transcript within {timeout:g} s", engine=transcriber.engine
        ) from None
