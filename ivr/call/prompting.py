"""A call's prompts: the engine's ``Play`` actions played, watched, paused and interrupted.

A prompt's text-to-speech (or its audio file) is read ahead to its first audio, under a deadline, while the
hold line fills the wait; then it plays and is watched to its end (the engine hears ``PromptFinished`` or
the provider's error). Barge-in, the pause over a possible backchannel and its resumption are the prompt's
side of what listening asks (:class:`ivr.call.listening.Ears`); the reply latency (end of the caller's
speech to our first frame) is settled here, where the frames start.

A mixin of :class:`~ivr.call.runtime.CallRuntime`: the attributes below are the runtime's, and what the
runtime provides is declared for the type checker only (no stub shadows a method at run time).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ivr.call.prompt_audio import first_audio, prompt_audio
from ivr.flow import actions as act
from ivr.flow import events as ev
from ivr.media.resample import resample
from ivr.media.wav import read_wav
from ivr.speech.errors import ProviderError
from ivr.transport import PcmSource, Playout, PlayoutResult, PlayoutState

if TYPE_CHECKING:
    from collections.abc import Coroutine
    from pathlib import Path

    from ivr.call.listening import Listening
    from ivr.call.ports import CallSpeech
    from ivr.call.report import CallReport
    from ivr.call.waiting import HoldLine
    from ivr.flow.engine import FlowEngine
    from ivr.transport import MediaTransport

FIRST_AUDIO_S = 10.0
"""A prompt whose text-to-speech gives no audio within this long takes the flow's error path (a backstop
over the providers' own first-audio deadlines, 8 s with retries)."""


class _Pending:
    """The prompt being read ahead to its first audio: it counts as playing (barge-in, echo guard)."""

    done = False
    first_frame_at: float | None = None

    async def wait(self) -> PlayoutResult:  # pragma: no cover - never awaited
        raise AssertionError("a pending prompt is not awaited")


_PENDING = _Pending()


class Prompting:
    """Plays the engine's prompts (a mixin of :class:`~ivr.call.runtime.CallRuntime`)."""

    engine: FlowEngine
    media: MediaTransport
    speech: CallSpeech
    hold: HoldLine
    listening: Listening
    report: CallReport
    audio_dir: Path | None
    first_audio_at: float | None
    _playback: Playout | _Pending | None
    _play_action: act.Play | None
    _prompt_task: asyncio.Task[Any] | None
    _play_gen: int
    _barge_traced: int
    _reply_since: float | None
    _reply_playbacks: list[Playout]

    if TYPE_CHECKING:  # provided by the runtime

        def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]: ...
        def _post(self, event: ev.Event) -> None: ...
        def _trace(self, kind: str, text: str = "", step: str | None = None) -> None: ...
        def _record_error(self, message: str) -> None: ...
        def _provider_failed(self, provider: str, what: str, exc: ProviderError) -> None: ...
        def _stop_listening(self) -> None: ...
        def _use_language(self, language: str) -> None: ...
        def _play_action_barge(self) -> bool: ...

    # -- prompts ---------------------------------------------------------------------------------

    async def _play(self, action: act.Play) -> None:
        self._stop_playback()  # whatever played belongs to a step the engine has left
        self._stop_listening()
        self._use_language(action.language)
        self._play_gen += 1
        gen = self._play_gen
        asked = asyncio.get_running_loop().time()
        try:
            source = await self._prompt_source(action)
        except (ProviderError, OSError, ValueError) as exc:
            self._record_error(f"prompt for step {action.step} unavailable: {exc}")
            self._post(ev.ProviderError("tts", str(exc)))
            return
        self._trace("prompt", action.text or f"[audio {action.audio}]", action.step)
        self._playback, self._play_action = _PENDING, action
        self._prompt_task = self._spawn(self._run_prompt(source, gen, asked), "prompt")

    async def _run_prompt(self, source: PcmSource, gen: int, asked: float) -> None:
        """Read the prompt to its first audio (the hold line fills a slow start), then play and watch it."""
        engine = getattr(self.speech.synthesizer, "engine", "tts")
        try:
            with self.hold.waiting(self._reply_since or asked, self.engine.filler_text()):
                source = await first_audio(source, FIRST_AUDIO_S, engine=engine)
        except ProviderError as exc:
            if gen == self._play_gen:
                self._playback = None
                self._provider_failed("tts", "text-to-speech failed before its first audio", exc)
                self._post(ev.ProviderError("tts", str(exc)))
            return
        if gen != self._play_gen:
            return
        self.media.clear()  # a hold tone or filler gives way to the prompt
        playback = self._start_prompt(source)
        self._playback = playback
        await self._watch_playback(playback, gen, asked)

    async def _prompt_source(self, action: act.Play) -> PcmSource:
        rate = self.media.rate
        if action.audio is not None:
            if self.audio_dir is None:
                raise ValueError(f"audio {action.audio!r}: no audio directory configured")
            path = self.audio_dir / f"{action.audio}.wav"
            wav = await asyncio.to_thread(read_wav, path, channels=1)
            return wav.pcm if wav.rate == rate else await asyncio.to_thread(resample, wav.pcm, wav.rate, rate)
        return prompt_audio(self.speech.synthesizer, action, rate)

    def _start_prompt(self, source: PcmSource) -> Playout:
        """Every prompt (filler, hold tone and goodbye included) starts here: the first frame of whichever
        plays first after the caller's utterance is the reply the caller waited for."""
        playback = self.media.play(source)
        if self._reply_since is not None:
            self._reply_playbacks.append(playback)
        return playback

    def _settle_reply_latency(self) -> None:
        """Record end of speech -> first reply frame once a reply frame has been written (cut or not)."""
        since = self._reply_since
        if since is None:
            return
        firsts = [p.first_frame_at for p in self._reply_playbacks if p.first_frame_at is not None]
        if firsts:
            self.report.response_latency_ms.append(max(0.0, min(firsts) - since) * 1000)
            self._reply_since = None
            self._reply_playbacks = []

    async def _watch_playback(self, playback: Playout, gen: int, asked: float) -> None:
        try:
            result = await playback.wait()
        finally:
            self._settle_reply_latency()
        if playback.first_frame_at is not None:
            self.report.tts_first_audio_ms.append(max(0.0, playback.first_frame_at - asked) * 1000)
        if self.first_audio_at is None and playback.first_frame_at is not None:
            self.first_audio_at = playback.first_frame_at
        if gen != self._play_gen:
            return  # superseded or barged in: the engine was told already
        self._playback = None
        if result.state is PlayoutState.FAILED:
            error = result.error
            if isinstance(error, ProviderError):
                self._provider_failed("tts", f"prompt failed after {result.frames} frames", error)
            else:
                self._record_error(f"prompt failed after {result.frames} frames: {error}")
            self._post(ev.ProviderError("tts", str(error)))
            return
        if result.state is PlayoutState.COMPLETED:
            self._prompt_ended()
            self._post(ev.PromptFinished())

    async def _say_and_wait(self, text: str, timeout: float = 10.0) -> None:
        self._stop_listening()
        self._stop_playback()
        try:
            source = await self._prompt_source(self.engine.fixed_prompt("goodbye", text))
            playback = self._start_prompt(source)
            self._trace("prompt", text, "goodbye")
            async with asyncio.timeout(timeout):
                await playback.wait()
        except (ProviderError, OSError, ValueError, TimeoutError) as exc:
            self._record_error(f"goodbye not played: {exc}")

    def _stop_playback(self) -> None:
        if self._playback is not None:
            self._play_gen += 1
            self._playback = None
            self._play_action = None
        task, self._prompt_task = self._prompt_task, None
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()  # a prompt still waiting for its first audio
        self.media.clear()

    def _prompt_ended(self) -> None:
        """The prompt finished or was interrupted: listening proper (and its timer) starts."""
        self.listening.prompt_ended()
        if self.listening.listen is not None:
            self._trace("listen", step=self.listening.listen.step)

    def _barge_in(self) -> None:
        barged = self._play_action is not None and self._play_action.barge_in
        self._trace_barge_in()
        self._stop_playback()
        self.listening.interrupted()
        if self.listening.listen is not None:
            self._trace("listen", step=self.listening.listen.step)
        if barged and self.listening.listen is None:
            self._post(ev.BargeIn())  # a say step moves on; a question keeps listening

    # -- the prompt's side of what listening asks (ivr.call.listening.Ears) -------------------

    def prompt_audible(self) -> bool:
        return self._playback is not None and not self._playback.done and self._play_action_barge()

    def _trace_barge_in(self) -> None:
        """``barge_in`` once per prompt, when the caller stopped hearing it (paused or stopped)."""
        if self._barge_traced != self._play_gen:
            self._barge_traced = self._play_gen
            self._trace("barge_in", step=self._play_action.step if self._play_action else None)

    def pause_prompt(self) -> bool:
        if not isinstance(self._playback, _Pending) and self.media.pause():
            self._trace_barge_in()
            if self.listening.listen is not None:
                self._trace("listen", step=self.listening.listen.step)  # the caller has the floor
            return True
        return False  # still waiting for its first audio (a hold sound plays): interrupt instead

    def resume_prompt(self) -> None:
        self.media.resume()
        self._barge_traced = -1
        self._trace("resumed", step=self._play_action.step if self._play_action else None)

    def interrupt_prompt(self) -> None:
        self._barge_in()
