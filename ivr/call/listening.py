"""One call's ears: every caller frame, the end of each answer, barge-in, and the no-input and digit timers.

Per frame (straight from the transport's socket callback, nothing else runs per frame): the echo gate, the
VAD (Silero or energy, :mod:`ivr.call.turn_models`), the endpointer and the end-of-turn detector. At each
pause of an answer the end-of-turn model is asked on its own worker thread (never on the pacing thread);
its verdict comes back through the loop and may end the turn at once. Where the question checks words
(:class:`ivr.call.transcribing.PauseWords`: ``end_of_turn.words``) the words said so far are transcribed at
the pause too, and the turn ends early only when the model says finished *and* the words already answer
the question; a digit string (no model) is judged by its words alone at its ``digits_silence_ms`` pause
and waits up to ``incomplete_silence_ms`` while still short. When the turn then ends in that pause (no
speech since), the pause's transcript is the answer's; speech after the pause drops it. Listening rules (VoiceXML/jambonz
gather semantics, as before):

* a question with a barge-in-able prompt listens at once, with the echo guard on; speech onset over the
  prompt *pauses* it and the backchannel filter decides: speech that ends within the step's
  ``backchannel_ms`` is transcribed while the prompt stays paused: "mm-hm", "okay" (a backchannel word
  that is not one of the question's answers) lets the prompt play on from where it stopped and the
  question keeps listening, anything else is the answer; longer speech interrupts at once (the answer
  is kept from its onset). Over a ``say`` step the same: a backchannel lets it play on, other words (or
  longer speech) interrupt it and the flow moves on. With ``backchannel_ms: 0``
  (or a transport that cannot pause) onset interrupts at once. A key interrupts at once, always;
* what is played is told to the echo gate (:class:`PlayedLine`), so the prompt's own echo on the caller's
  line (carriers cancel none) neither barges in nor joins an answer;
* a prompt that is not barge-in-able is heard to the end: speech is only listened for afterwards;
* the no-input timer runs on the wall clock from the end of the prompt: in a two-party bridge Asterisk
  sends no frames while the caller's side sends none, so inbound audio is not a clock.

The runtime (:class:`ivr.call.runtime.CallRuntime`) owns prompts and providers and is this module's
:class:`Ears` owner: it is told what to do with the prompt (:mod:`ivr.call.prompting`) and with each
finished answer (:mod:`ivr.call.answering`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from ivr.call.pause_checks import PauseChecks
from ivr.call.transcribing import AnswerText, PauseWords
from ivr.call.turn_models import TurnModels
from ivr.flow import actions as act
from ivr.media.bargein import BackchannelFilter, BackchannelSettings, EchoGate, frame_level_db
from ivr.media.endpoint import Endpointer, ListenSettings, MaxLengthReached, SpeechEnded, SpeechStarted
from ivr.media.turn import CheckTurn, TurnDetector, TurnSettings
from ivr.media.vad import EnergyVad, FrameVad

log = logging.getLogger(__name__)

SILENT_DB = -100.0
FRAME_S = 0.02

FrameSink = Callable[[bytes], None]


class Ears(Protocol):
    """What listening asks of the call's owner (the runtime)."""

    def prompt_audible(self) -> bool:
        """A barge-in-able prompt (or its wait for first audio) is under way."""

    def pause_prompt(self) -> bool:
        """Hold the prompt (keeping its place); False if it cannot be held (then it is interrupted)."""

    def resume_prompt(self) -> None: ...

    def interrupt_prompt(self) -> None:
        """The caller interrupts: stop the prompt for good (a ``say`` step moves on)."""

    def speech_started(self, listen: act.Listen) -> FrameSink | None:
        """Answer speech began; a sink to stream its frames to (a live transcriber), or None."""

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
        """The turn ended: ``pcm`` is the answer, ``trailing_ms`` how long the caller has been silent.
        ``over_prompt``: short speech over the (paused) prompt: a backchannel if its transcript says so.
        ``heard``: the answer's transcript is already under way (the words check of the pause it ended in)."""

    def answer_dropped(self) -> None:
        """The speech that began was a backchannel after all: forget its live stream."""

    def no_input(self) -> None: ...

    def digit_timeout(self) -> None: ...


class PlayedLine:
    """The :class:`ivr.transport.PlayedTap` of a call: what the caller hears from us, applied to the echo
    gate in step with the caller's frames (each caller frame first takes every played frame due by then).

    Levels are computed as frames are told (a few microseconds each) and kept as ``(due, level)`` pairs,
    so WebSocket media's frames, told ahead in bursts, reach the gate when Asterisk plays them.
    """

    __slots__ = ("_due", "_gate", "_held_at", "_last", "last_audio_at")

    def __init__(self, gate: Endpointer) -> None:
        self._gate = gate
        self._due: deque[tuple[float, float]] = deque()
        self._held_at: float | None = None
        self._last = float("-inf")
        self.last_audio_at: float | None = None
        """Loop time the caller last heard a frame of our audio (the hold line measures silence from it)."""

    def played(self, frame: bytes | memoryview | None, at: float) -> None:
        level = SILENT_DB if frame is None else frame_level_db(frame)  # type: ignore[arg-type]
        self._due.append((at, level))

    def played_db(self, level_db: float, at: float) -> None:
        self._due.append((at, level_db))

    def flushed(self, at: float) -> None:
        due = self._due
        while due and due[-1][0] > at:
            due.pop()

    def held(self, at: float) -> None:
        self._held_at = at

    def released(self, at: float) -> None:
        held, self._held_at = self._held_at, None
        if held is None:
            return
        shift = at - held
        self._due = deque((t + shift, v) if t > held else (t, v) for t, v in self._due)

    def advance(self, now: float) -> None:
        """Before a caller frame: tell the gate every frame played up to ``now`` (a gap: silence)."""
        due = self._due
        gate = self._gate
        told = False
        limit = now if self._held_at is None else min(now, self._held_at)
        while due and due[0][0] <= limit:
            at, level = due.popleft()
            gate.note_playback_level(level)
            self._last = at
            told = True
            if level > -60.0:
                self.last_audio_at = at + FRAME_S
        if not told and now - self._last > 1.5 * FRAME_S:
            gate.note_playback_level(SILENT_DB)  # nothing played for this frame: the line carried silence
            self._last = now


class Listening:
    """Listening of one call (see the module docstring). Create once per call, ``close()`` at its end."""

    def __init__(
        self,
        rate: int,
        ears: Ears,
        *,
        models: TurnModels | None,
        speech_audio: bool,
        words: PauseWords | None = None,
    ) -> None:
        self.rate = rate
        self.ears = ears
        self.models = models
        vad = models.vad_for(rate, speech_audio=speech_audio) if models is not None else EnergyVad(rate)
        # Speech audio gets the echo gate (what we play is its reference). The simulation's text carriers
        # have no echo to reject and keep the endpointer's static echo guard, as before: their VAD feeds
        # the endpointer directly (the endpointer keeps the last verdict, one call less per frame).
        self.gate: EchoGate | FrameVad = EchoGate(vad) if speech_audio else vad
        self.endpointer = Endpointer(rate, detector=self.gate)
        self.frame_bytes = self.endpointer.frame_bytes
        model = models.turn if models is not None and speech_audio else None
        self.turns = TurnDetector(self.endpointer)
        self.pauses = PauseChecks(
            self.turns, model=model, words=words if speech_audio else None, ended=self._verdict_ended
        )
        self.turns.model = self.pauses.available
        self.played: PlayedLine | None = PlayedLine(self.endpointer) if speech_audio else None
        self.clock: Callable[[], float] = time.monotonic
        """The loop's clock (the runtime sets it when the call runs): the played line's time per frame."""
        self.listen: act.Listen | None = None
        self.gen = 0
        self.armed = False
        self._onset_only = False
        self._settings: tuple[ListenSettings, TurnSettings | None] | None = None
        self._filter: BackchannelFilter | None = None
        self._short = False
        """Short speech over a paused prompt: its transcript will say whether it was a backchannel."""
        self._held_end: SpeechEnded | None = None
        self._live: FrameSink | None = None
        self._no_input: asyncio.TimerHandle | None = None
        self._digit_timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._prompt_backchannel = 0
        self.vad_kind = vad.name

    # -- arming -----------------------------------------------------------------------------------

    def start(self, listen: act.Listen, *, playing: bool, barge_in: bool) -> None:
        """A question's ``Listen``: listen now (with the echo guard while its prompt plays), or after it."""
        self.listen = listen
        self.gen += 1
        self.pauses.drop()
        self._onset_only = False
        self._short = False
        if listen.speech and (not playing or barge_in):
            self._arm(listen, echo_guard=playing)
        if not playing:
            self.start_no_input()

    def start_onset_only(self, backchannel_ms: int) -> None:
        """A barge-in-able statement (``say``/``play``) plays and no question listens: speech onset only."""
        self._onset_only = True
        self.pauses.arm(None)
        self._prompt_backchannel = backchannel_ms
        self._settings = (ListenSettings(no_input_ms=None), None)
        self.turns.listen(self._settings[0], turn=None, echo_guard=True)
        self.armed = True

    def _arm(self, listen: act.Listen, *, echo_guard: bool) -> None:
        if self.endpointer.in_speech:
            self.armed = True  # the caller is mid-utterance (barge-in): keep it from its onset
            return
        settings = ListenSettings(
            trailing_silence_ms=listen.endpointing_silence_ms,
            max_utterance_ms=listen.max_utterance_ms,
            no_input_ms=None,  # wall clock, see module docstring
        )
        turn = self.pauses.arm(listen)
        self._settings = (settings, turn)
        self.turns.listen(settings, turn=turn, echo_guard=echo_guard)
        self.armed = True

    def prompt_ended(self) -> None:
        """The prompt finished or was interrupted: listening proper (and its timer) starts."""
        self._filter = None
        self._short = False
        listen = self.listen
        if listen is None:
            return
        if listen.speech:
            if self.armed:
                self.endpointer.end_echo_guard()
            else:
                self._arm(listen, echo_guard=False)
        self.start_no_input()

    def stop(self) -> None:
        """The flow moved on (or a provider is busy with the answer): disarm, drop any partial answer."""
        self.listen = None
        self.gen += 1
        self.pauses.drop()
        self.armed = False
        self._onset_only = False
        self._filter = None
        self._short = False
        self._held_end = None
        if self._live is not None:
            self._live = None
            self.ears.answer_dropped()
        self.endpointer.stop()
        self.cancel_timers()

    def cancel_timers(self) -> None:
        for timer in (self._no_input, self._digit_timer):
            if timer is not None:
                timer.cancel()
        self._no_input = self._digit_timer = None

    def start_no_input(self) -> None:
        listen = self.listen
        if listen is None:
            return
        if self._no_input is not None:
            self._no_input.cancel()
        loop = asyncio.get_running_loop()
        self._no_input = loop.call_later(listen.no_input_timeout_ms / 1000, self._no_input_fired, self.gen)

    def _no_input_fired(self, gen: int) -> None:
        self._no_input = None
        if gen != self.gen or self.endpointer.in_speech:
            return
        self.stop()
        self.ears.no_input()

    def key(self, digit: str) -> None:
        """A key of the current question (after the runtime stopped any prompt): its timers."""
        listen = self.listen
        if listen is None or not listen.dtmf:
            return
        if self._no_input is not None:
            self._no_input.cancel()
            self._no_input = None
        if listen.max_digits != 1:
            if self._digit_timer is not None:
                self._digit_timer.cancel()
            loop = asyncio.get_running_loop()
            self._digit_timer = loop.call_later(
                listen.inter_digit_timeout_ms / 1000, self._digit_fired, self.gen
            )

    def _digit_fired(self, gen: int) -> None:
        self._digit_timer = None
        if gen == self.gen:
            self.ears.digit_timeout()

    def interrupted(self) -> None:
        """The prompt was stopped by the caller (speech or a key): normal thresholds, no-input timer."""
        self._filter = None
        self._short = False
        if self.armed:
            self.endpointer.end_echo_guard()
        if self.listen is not None:
            self.start_no_input()

    # -- per frame --------------------------------------------------------------------------------

    def feed(self, frame: bytes, level: float | None = None) -> None:
        """One 20 ms caller frame (straight from the transport's callback, see
        :class:`ivr.call.frame_batch.FrameIntake`); ``level``: its dBFS when measured already."""
        played = self.played
        if played is not None:
            played.advance(self.clock())
        endpointer = self.endpointer
        heard = endpointer.feed(frame, level)  # the turn detector's feed, one call less per frame
        event = None if heard is None else self.turns.on_event(heard)
        in_speech = endpointer.in_speech
        if in_speech:
            self.pauses.frame(True)
            if self._live is not None:
                self._live(frame)
        flt = self._filter
        if flt is None and event is None and not self._short:
            return  # the usual frame: nothing to decide
        decision = flt.frame(endpointer.voiced) if flt is not None else None
        if decision is not None:
            self._filter = None
        if decision is None and self._short and endpointer.voiced and in_speech:
            self._short = False  # short speech went on after all: a real answer, the prompt is over
            self.ears.interrupt_prompt()
        if event is not None and self.armed:
            kind = type(event)
            if kind is SpeechStarted:
                self._speech_started()
            elif kind is CheckTurn:
                self.pauses.check(event, self.listen)  # type: ignore[arg-type]
            elif kind is SpeechEnded or kind is MaxLengthReached:
                self._ended(event)  # type: ignore[arg-type]
        if decision == "resume":
            if self._onset_only or self.listen is None or not self.listen.speech:
                self._short_answer()  # over a statement: decide now, it is paused
            else:
                self._short = True  # a question: the answer's own end (silence, model) decides
                held, self._held_end = self._held_end, None
                if held is not None:
                    self._ended(held)
        elif decision == "interrupt":
            self._filter = None
            self.ears.interrupt_prompt()
            held, self._held_end = self._held_end, None
            if held is not None:
                self._ended(held)

    def _speech_started(self) -> None:
        if self._no_input is not None:
            self._no_input.cancel()
            self._no_input = None
        listen = self.listen
        if listen is not None and listen.speech and not self._onset_only:
            self._live = self.ears.speech_started(listen)
            if self._live is not None:
                self._live(self.endpointer.captured())
        if not self.ears.prompt_audible():
            return
        backchannel = self.listen.backchannel_ms if self.listen is not None else self._prompt_backchannel
        if backchannel > 0 and self.ears.pause_prompt():
            self._filter = BackchannelFilter(BackchannelSettings(max_backchannel_ms=backchannel))
            self._filter.start(voiced_ms=ListenSettings().echo_min_voiced_ms)
            self.endpointer.end_echo_guard()  # the caller's own level now decides
            return
        self.ears.interrupt_prompt()

    def _short_answer(self) -> None:
        """Short speech over a question's prompt: "mm-hm", or "sales"? Its transcript decides, while the
        prompt stays paused: the runtime resumes it (:meth:`resume`) or takes the answer."""
        self._filter = None
        ended = self._held_end or self.endpointer.end_turn()
        self._held_end = None
        if ended is None:
            self._resume()
            return
        self.armed = False
        if self._live is not None:
            self._live = None
            self.ears.answer_dropped()  # a short clip: transcribed whole
        self.cancel_timers()
        trailing = self.endpointer.elapsed_ms - ended.ended_at_ms
        listen = None if self._onset_only else self.listen
        heard = self.pauses.take()
        self.ears.answer(ended.pcm, trailing, listen, self.gen, over_prompt=True, heard=heard)

    def resume(self) -> None:
        """The short speech was a backchannel: the prompt plays on and listening goes on as before."""
        self.ears.resume_prompt()
        settings = self._settings
        if settings is not None and (self.listen is not None or self._onset_only):
            self.turns.listen(settings[0], turn=settings[1], echo_guard=True)
            self.armed = True

    def _resume(self) -> None:
        """A backchannel: the prompt plays on and the answer heard so far is forgotten."""
        self._filter = None
        self._held_end = None
        self.pauses.drop()
        if self._live is not None:
            self._live = None
            self.ears.answer_dropped()
        self.ears.resume_prompt()
        settings = self._settings
        if settings is not None:
            self.turns.listen(settings[0], turn=settings[1], echo_guard=True)

    def _ended(self, event: SpeechEnded | MaxLengthReached) -> None:
        if self._filter is not None:  # still deciding whether it was a backchannel: wait for that
            ended = (
                event
                if type(event) is SpeechEnded
                else SpeechEnded(
                    event.pcm, event.duration_ms, event.started_at_ms, self.endpointer.elapsed_ms
                )
            )
            self._held_end = ended
            return
        listen = self.listen
        self.armed = False
        self._live = None
        short, self._short = self._short, False
        heard = self.pauses.take()
        if listen is None or not listen.speech or self._onset_only:
            if heard is not None:
                heard.cancel()
            return
        trailing = self.endpointer.elapsed_ms - event.ended_at_ms if type(event) is SpeechEnded else 0
        self.cancel_timers()
        self.ears.answer(event.pcm, trailing, listen, self.gen, over_prompt=short, heard=heard)

    def _verdict_ended(self, ended: SpeechEnded) -> None:
        """A pause's verdict ended the turn (:class:`~ivr.call.pause_checks.PauseChecks`)."""
        if self.armed:
            self._ended(ended)

    def close(self) -> None:
        self._closed = True
        self.cancel_timers()
        self.pauses.close()
