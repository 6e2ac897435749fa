"""Speech-to-text for one answer: streamed while the caller speaks where the engine takes live audio.

A transcriber with ``live_input`` (OpenAI Realtime: the audio goes up the call's socket as it comes) gets
the answer frame by frame from its onset, so when the turn ends only the commit is left and the final
transcript arrives a round trip later. Other engines get the whole answer at the end (an HTTP upload, or
offline Whisper, which reads a whole utterance). Every request has a deadline: a provider that hangs takes
the flow's error path, it never leaves the caller in silence for ever.

:class:`PauseWords` transcribes the words said so far at a pause in the caller's speech (beside the
end-of-turn model), so the turn ends early only when they already answer the question; when the turn then
ends in that pause, its transcript is the answer's (:class:`PauseCheck` finishes like a live transcription):
the same audio is never transcribed twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Protocol

from ivr.call.ports import CallSpeech
from ivr.flow import actions as act
from ivr.flow.engine import FlowEngine
from ivr.speech.base import Transcriber, Transcript
from ivr.speech.errors import DeadlineExceededError, ProviderError

STT_DEADLINE_S = 12.0
"""Longest a transcription may take (a backstop over the providers' own deadlines: 8 s with retries)."""


LOCAL_STT = frozenset({"offline"})
"""Speech-to-text engines that run on this machine (in-process or in a speech worker): a words check at a
pause costs their CPU only. A cloud engine would bill every check and add its round trip to the turn's end,
so ``end_of_turn.words: auto`` (the default) checks only with these."""


def takes_live_audio(transcriber: Transcriber) -> bool:
    return bool(getattr(transcriber, "live_input", False))


class AnswerText(Protocol):
    """The transcript of an answer whose transcription is already under way (streamed, or at a pause)."""

    async def finish(self, timeout: float = ...) -> Transcript: ...

    def cancel(self) -> None: ...


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


@dataclass(frozen=True, slots=True)
class PauseHeard:
    """What a pause's words check found: the transcript so far, and whether it answers the question."""

    transcript: Transcript
    complete: bool


class PauseCheck:
    """One pause's words check (a task of the call's); :meth:`finish` makes it the answer's transcript."""

    __slots__ = ("_pcm", "_transcribe", "task")

    def __init__(
        self,
        pcm: bytes,
        task: asyncio.Task[PauseHeard | ProviderError],
        transcribe_again: Callable[[bytes], Coroutine[Any, Any, Transcript]],
    ) -> None:
        self._pcm = pcm
        self._transcribe = transcribe_again
        self.task = task

    @property
    def heard(self) -> PauseHeard | ProviderError | None:
        """The result once the check is over (None while it runs, or if it was cancelled)."""
        task = self.task
        return task.result() if task.done() and not task.cancelled() else None

    async def finish(self, timeout: float = STT_DEADLINE_S) -> Transcript:
        """The turn ended in this pause: its transcript (awaited if the check still runs). A check that
        failed is transcribed once more, as an answer without a check would have been."""
        try:
            async with asyncio.timeout(timeout):
                result = await asyncio.shield(self.task)
        except TimeoutError:
            self.cancel()
            raise DeadlineExceededError(f"no transcript within {timeout:g} s", engine="stt") from None
        if isinstance(result, PauseHeard):
            return result.transcript
        return await self._transcribe(self._pcm)

    def cancel(self) -> None:
        self.task.cancel()


class PauseWords:
    """Words checks of one call: at a pause, the audio so far goes to the call's speech-to-text and the
    text to the flow engine's :meth:`~ivr.flow.engine.FlowEngine.answer_complete` (on the engine's thread
    when the process has one, as every engine call). Tasks are the call's (``spawn``): its owner cancels
    them at hangup; :class:`ivr.call.listening.Listening` cancels a check the caller talked over."""

    def __init__(
        self,
        speech: CallSpeech,
        *,
        rate: int,
        engine: FlowEngine,
        executor: Executor | None,
        spawn: Callable[[Coroutine[Any, Any, Any], str], asyncio.Task[Any]],
    ) -> None:
        self._speech = speech
        self._rate = rate
        self._engine = engine
        self._executor = executor
        self._spawn = spawn

    def wanted(self, listen: act.Listen) -> bool:
        """Check words for this question? Its ``words_check`` setting, and an engine that takes a whole
        utterance (a live one streams its own words); ``auto``: only one that runs here."""
        setting = listen.words_check
        transcriber = self._speech.transcriber
        if setting is False or takes_live_audio(transcriber):
            return False
        return setting is True or transcriber.engine in LOCAL_STT

    def check(self, pcm: bytes, listen: act.Listen) -> PauseCheck:
        hints = listen.hints
        language = listen.language.split("-")[0]

        async def again(audio: bytes) -> Transcript:
            t = self._speech.transcriber
            return await transcribe(t, audio, rate=self._rate, hints=hints, language=language)

        task = self._spawn(self._run(pcm, again), "stt-pause")
        return PauseCheck(pcm, task, again)

    async def _run(
        self, pcm: bytes, run: Callable[[bytes], Coroutine[Any, Any, Transcript]]
    ) -> PauseHeard | ProviderError:
        try:
            transcript = await run(pcm)
        except ProviderError as exc:
            return exc  # the answer's own transcription meets it (or not): never the call's failure here
        text, confidence = transcript.text, transcript.confidence
        if self._executor is None:
            complete = self._engine.answer_complete(text, confidence)
        else:
            loop = asyncio.get_running_loop()
            complete = await loop.run_in_executor(
                self._executor, self._engine.answer_complete, text, confidence
            )
        return PauseHeard(transcript, complete)
