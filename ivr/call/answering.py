"""A call's answers: from the engine's ``Listen`` to the ``SpeechRecognized`` it waits for.

Listening (:mod:`ivr.call.listening`) hears the caller and hands each answer over here (its side of
:class:`ivr.call.listening.Ears`: speech began, an answer, a dropped one, the timers); this module starts
listening for a question, streams an answer to a live transcriber where the engine takes live audio,
turns each answer into text while the hold line keeps the caller out of dead air, tells a backchannel
over a paused prompt from words, and carries what was said over a statement to the question after it.

A mixin of :class:`~ivr.call.runtime.CallRuntime`: the attributes below are the runtime's, and what the
runtime provides is declared for the type checker only (no stub shadows a method at run time).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ivr.call.listening import FrameSink
from ivr.call.transcribing import AnswerText, LiveTranscription, takes_live_audio, transcribe
from ivr.flow import actions as act
from ivr.flow import events as ev
from ivr.flow.questions import is_backchannel
from ivr.speech.errors import ProviderError

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from ivr.call.listening import Listening
    from ivr.call.ports import CallSpeech
    from ivr.call.prompting import _Pending
    from ivr.call.report import CallReport
    from ivr.call.waiting import HoldLine
    from ivr.flow.engine import FlowEngine
    from ivr.transport import MediaTransport, Playout


class Answering:
    """Takes the caller's answers to the engine (a mixin of :class:`~ivr.call.runtime.CallRuntime`)."""

    engine: FlowEngine
    media: MediaTransport
    speech: CallSpeech
    hold: HoldLine
    listening: Listening
    report: CallReport
    _live: LiveTranscription | None
    _carried: ev.SpeechRecognized | None
    _playback: Playout | _Pending | None
    _reply_since: float | None
    _reply_playbacks: list[Playout]

    if TYPE_CHECKING:  # provided by the runtime and its prompts (ivr.call.prompting)

        def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]: ...
        def _post(self, event: ev.Event) -> None: ...
        def _trace(self, kind: str, text: str = "", step: str | None = None) -> None: ...
        def _provider_failed(self, provider: str, what: str, exc: ProviderError) -> None: ...
        def _use_language(self, language: str) -> None: ...
        def _play_action_barge(self) -> bool: ...
        def _stop_playback(self) -> None: ...
        def _settle_reply_latency(self) -> None: ...
        def _barge_in(self) -> None: ...

    # -- listening for a question ---------------------------------------------------------------

    def _start_listen(self, listen: act.Listen) -> None:
        carried, self._carried = self._carried, None
        if carried is not None and listen.speech:
            self._stop_playback()  # the caller answered already, over the statement before the question
            self.listening.start(listen, playing=False, barge_in=False)
            self._trace("heard", "•••" if listen.sensitive else carried.text, listen.step)
            self._post(carried)
            return
        self._use_language(listen.language)
        playing = self._playback is not None and not self._playback.done
        self.listening.start(listen, playing=playing, barge_in=self._play_action_barge())
        if not playing:
            self._trace("listen", step=listen.step)

    # -- the answer's side of what listening asks (ivr.call.listening.Ears) -------------------

    def speech_started(self, listen: act.Listen) -> FrameSink | None:
        transcriber = self.speech.transcriber
        if not takes_live_audio(transcriber):
            return None
        if self._live is not None:
            self._live.cancel()
        self._live = LiveTranscription(
            transcriber,
            rate=self.media.rate,
            hints=listen.hints,
            language=listen.language.split("-")[0],
            spawn=self._spawn,
        )
        return self._live.push

    def answer_dropped(self) -> None:
        live, self._live = self._live, None
        if live is not None:
            live.cancel()

    def answer(
        self,
        pcm: bytes,
        trailing_ms: int,
        listen: act.Listen | None,
        gen: int,
        *,
        over_prompt: bool,
        heard: AnswerText | None = None,
    ) -> None:
        # The caller stopped speaking a trailing silence (or a model check) before the turn was taken.
        now = asyncio.get_running_loop().time()
        since = now - trailing_ms / 1000
        if not over_prompt:
            self._settle_reply_latency()
            self._reply_since, self._reply_playbacks = since, []
        live: AnswerText | None = heard or self._live
        if heard is not None and self._live is not None:
            self._live.cancel()  # the words check at the pause the turn ended in already has the text
        self._live = None
        self._spawn(self._transcribe(pcm, listen, gen, live, since, over_prompt), "stt")

    def no_input(self) -> None:
        self._post(ev.NoInput())

    def digit_timeout(self) -> None:
        self._post(ev.DigitTimeout())

    # -- the answer to text ----------------------------------------------------------------------

    async def _transcribe(
        self,
        pcm: bytes,
        listen: act.Listen | None,
        gen: int,
        live: AnswerText | None,
        since: float,
        over_prompt: bool = False,
    ) -> None:
        """One answer to text, then to the engine. ``over_prompt``: short speech while the prompt is paused
        (``listen`` None: over a ``say`` step), which lets the prompt play on when it was only a backchannel."""
        transcriber = self.speech.transcriber
        loop = asyncio.get_running_loop()
        started = loop.time()
        hints = listen.hints if listen is not None else ()
        language = (listen.language if listen is not None else self.engine.language).split("-")[0]
        try:
            with self.hold.waiting(since, self.engine.filler_text()):
                if live is not None:
                    result = await live.finish()
                else:
                    result = await transcribe(
                        transcriber, pcm, rate=self.media.rate, hints=hints, language=language
                    )
            self.report.stt_ms.append((loop.time() - started) * 1000)
        except ProviderError as exc:
            self._provider_failed("stt", "speech-to-text failed", exc)
            if gen == self.listening.gen:
                self._post(ev.ProviderError("stt", str(exc)))
            return
        if gen != self.listening.gen:
            return
        sensitive = listen is not None and listen.sensitive
        if over_prompt:
            if is_backchannel(result.text, hints):
                self._trace("backchannel", "•••" if sensitive else result.text)
                self.listening.resume()
                return
            self._barge_in()  # words after all: the paused prompt is over (a say step moves on)
            self._settle_reply_latency()
            self._reply_since, self._reply_playbacks = since, []
            if listen is None:
                # Said over a statement: the answer to the question that follows, if one does.
                self._carried = ev.SpeechRecognized(
                    result.text, 1.0 if result.confidence is None else result.confidence
                )
                return
        if listen is None:
            return
        confidence = 1.0 if result.confidence is None else result.confidence
        self._trace("heard", "•••" if sensitive else result.text, listen.step)
        self._post(ev.SpeechRecognized(result.text, confidence))
