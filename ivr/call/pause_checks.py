"""What a pause in the caller's speech is asked: the end-of-turn model and/or the words said so far.

At a pause (:class:`ivr.media.turn.CheckTurn`) the model runs on its worker thread and the words go to the
call's speech-to-text (:class:`ivr.call.transcribing.PauseWords`), both at once. The verdict is "not
finished" as soon as either says so, and "finished" once every check asked agrees: Smart Turn judges
intonation and finds "Let me think," finished; the words know that it answers nothing yet (VoiceXML's
complete and incomplete timeouts). A digit string has no model: its words alone judge its pause. A failed
check leaves the decision to the other one, or to silence.

When the turn ends in the pause that was checked (no speech since), the words check is the answer's
transcript (:meth:`PauseChecks.take`); speech after the pause drops it (its task is cancelled). Every check
belongs to one call's :class:`ivr.call.listening.Listening`, which drops them when its question changes
and closes them at hangup.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from ivr.call.transcribing import PauseCheck, PauseHeard, PauseWords
from ivr.flow import actions as act
from ivr.media.endpoint import SpeechEnded
from ivr.media.smart_turn import TurnModelExecutor
from ivr.media.turn import CheckTurn, TurnDetector, TurnSettings
from ivr.speech.errors import ProviderError

log = logging.getLogger("ivr.call.listening")


@dataclass(slots=True, eq=False)
class _Pause:
    """One checked pause: the model's future and/or the words check, and what they said so far."""

    request: int
    model: asyncio.Future[float] | None
    words: PauseCheck | None
    probability: float | None = None
    model_done: bool = False
    decided: bool = False


class PauseChecks:
    """The pause checks of one call. ``ended`` is told of a turn a verdict ended (on the loop)."""

    def __init__(
        self,
        turns: TurnDetector,
        *,
        model: TurnModelExecutor | None,
        words: PauseWords | None,
        ended: Callable[[SpeechEnded], None],
    ) -> None:
        self.turns = turns
        self._model = model
        self._words = words
        self._ended = ended
        self._ask_model = False
        self._ask_words = False
        self._pause: _Pause | None = None
        """The latest checked pause, while its verdict or its transcript may still matter."""
        self._futures: set[asyncio.Future[float]] = set()
        self._closed = False

    @property
    def available(self) -> bool:
        """Anything to ask at a pause at all (else the detector is plain endpointing)."""
        return self._model is not None or self._words is not None

    def arm(self, listen: act.Listen | None) -> TurnSettings | None:
        """What this question checks at a pause (None: nothing, e.g. over a statement); its turn settings.

        With the model: its pause and silences. Words alone (a digit string, or ``model: false``): the
        pause silence would have ended the turn on is checked, and words that are no answer yet wait up
        to ``incomplete_silence_ms``."""
        self.drop()
        model = listen is not None and listen.turn_model and self._model is not None
        words = listen is not None and self._words is not None and self._words.wanted(listen)
        self._ask_model, self._ask_words = model, words
        if listen is None:
            return None
        if model:
            return TurnSettings(listen.turn_min_silence_ms, listen.turn_max_silence_ms, listen.turn_threshold)
        if words:
            silence = listen.endpointing_silence_ms
            return TurnSettings(silence, max(silence, listen.incomplete_silence_ms))
        return None

    def check(self, pause_event: CheckTurn, listen: act.Listen | None) -> None:
        """A pause: ask the model and/or the words, at once."""
        self.drop()
        model: asyncio.Future[float] | None = None
        executor = self._model
        if self._ask_model and executor is not None:
            loop = asyncio.get_running_loop()
            model = loop.run_in_executor(
                executor.pool, executor.model.probability, pause_event.pcm, pause_event.rate
            )
            self._futures.add(model)
        words = None
        if self._ask_words and self._words is not None and listen is not None:
            words = self._words.check(pause_event.pcm, listen)
        if model is None and words is None:
            return
        pause = _Pause(pause_event.request, model, words)
        self._pause = pause
        if model is not None:
            model.add_done_callback(partial(self._model_done, pause))
        if words is not None:
            words.task.add_done_callback(partial(self._words_done, pause))

    def frame(self, in_speech: bool) -> None:
        """After each caller frame: the caller spoke again after the pause, so its words are not the answer."""
        if self._pause is not None and self.turns.pause is None and in_speech:
            self.drop()

    def take(self) -> PauseCheck | None:
        """The turn ended: the words check of the pause it ended in, if no speech came after it."""
        pause, self._pause = self._pause, None
        if pause is None or pause.words is None:
            return None
        if self.turns.pause != pause.request:
            pause.words.cancel()
            return None
        return pause.words

    def drop(self) -> None:
        pause, self._pause = self._pause, None
        if pause is not None and pause.words is not None:
            pause.words.cancel()

    def close(self) -> None:
        self._closed = True
        self.drop()
        for future in list(self._futures):
            future.cancel()
        self._futures.clear()

    def _model_done(self, pause: _Pause, future: asyncio.Future[float]) -> None:
        self._futures.discard(future)
        if self._closed or future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            log.warning("end-of-turn check failed (%s); silence ends this turn", exc)
        pause.probability = None if exc is not None else future.result()
        pause.model_done = True
        self._decide(pause)

    def _words_done(self, pause: _Pause, task: asyncio.Task[PauseHeard | ProviderError]) -> None:
        if self._closed or task.cancelled():
            return
        heard = task.result()
        if isinstance(heard, ProviderError):
            log.info("words check at a pause failed (%s); the model or silence decides", heard)
        self._decide(pause)

    def _decide(self, pause: _Pause) -> None:
        if pause.decided or pause is not self._pause:
            return
        settings = self.turns.settings
        threshold = settings.threshold if settings is not None else 0.5
        heard = pause.words.heard if pause.words is not None else None
        words_pending = pause.words is not None and not pause.words.task.done()
        if pause.model is not None and pause.model_done:
            if pause.probability is None or pause.probability < threshold:
                verdict: float | None = pause.probability  # not finished (or unknown): wait
            elif isinstance(heard, PauseHeard):
                verdict = pause.probability if heard.complete else 0.0
            elif words_pending:
                return  # the model says finished: do the words agree?
            else:
                verdict = pause.probability  # no words check (or it failed): the model alone
        elif isinstance(heard, PauseHeard) and not heard.complete:
            verdict = 0.0  # the words are no answer yet, whatever the model will say
        elif pause.model is None and not words_pending:
            verdict = 1.0 if isinstance(heard, PauseHeard) else None
        else:
            return
        pause.decided = True
        ended = self.turns.verdict(pause.request, verdict)
        if ended is not None:
            self._ended(ended)
