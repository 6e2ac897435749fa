"""When has the caller finished? Endpointer events plus an end-of-turn model's verdicts.

Silence alone is a poor judge: 800 ms ends "four one one two ... three three" in the middle and still
keeps a caller who said "large." waiting most of a second. ``TurnDetector`` asks the model (Smart Turn,
``ivr.media.smart_turn``) each time speech pauses for ``min_silence_ms``:

- the model says *complete* (probability >= ``threshold``): the turn ends at once, about
  ``min_silence_ms`` + the model's time after the last word;
- it says *not yet* (a pause inside a card number, "uhm"): the detector waits; the caller speaks again
  (a new pause asks again) or ``max_silence_ms`` of silence ends the turn as before;
- the model is slow or fails: its verdict never comes or comes late, and ``max_silence_ms`` ends the turn
  (a late verdict for a pause that is over is ignored);
- the words said so far are checked too (the runtime's choice, ``ivr.call.listening``): its verdict is
  "finished" only when the model and the words agree; :attr:`TurnDetector.pause` tells it whether the
  caller is still in the pause that was checked;
- no model at all: plain endpointing on ``ListenSettings.trailing_silence_ms``, as without this class.

Pure and synchronous like the endpointer: time is the endpointer's frame count, the model runs
elsewhere (``CheckTurn`` out, ``verdict()`` in), so every path is testable in virtual time.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from ivr.media.endpoint import (
    Endpointer,
    Event,
    ListenSettings,
    MaxLengthReached,
    NoInput,
    SpeechEnded,
    SpeechPaused,
    SpeechResumed,
)


@dataclass(frozen=True, slots=True)
class TurnSettings:
    """Per-step end-of-turn settings (a flow may set them per question)."""

    min_silence_ms: int = 200
    """Pause after which the model is asked; the earliest a turn can end after the last word."""
    max_silence_ms: int = 1500
    """Silence that ends the turn whatever the model says (or when it is slow, failing or missing)."""
    threshold: float = 0.5
    """Model probability of "finished" that ends the turn early."""

    def __post_init__(self) -> None:
        if not 0 < self.min_silence_ms <= self.max_silence_ms:
            raise ValueError("end-of-turn silences need 0 < min_silence_ms <= max_silence_ms")
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError("end-of-turn threshold must be in (0, 1]")


@dataclass(frozen=True, slots=True)
class CheckTurn:
    """Ask the end-of-turn model about ``pcm`` (the utterance so far) and answer with ``verdict(request)``."""

    request: int
    pcm: bytes
    rate: int
    paused_at_ms: int


EndReason = Literal["model", "silence", "max_length"]


class TurnDetector:
    """Wraps one call's ``Endpointer``; feed it frames instead of the endpointer.

    ``model=False`` (no end-of-turn model installed or wanted) makes it a pass-through with today's
    energy endpointing. ``last_reason`` says why the last turn ended; ``checks``/``early_ends`` count.
    """

    def __init__(self, endpointer: Endpointer, *, model: bool = True) -> None:
        self.endpointer = endpointer
        self.model = model
        self.settings: TurnSettings | None = None
        self._pending: int | None = None
        self.pause: int | None = None
        """The request of the pause the caller is still in (no speech since it; kept when the turn ends
        in it): what was heard at that pause is the whole answer. None once they speak again."""
        self._next = 0
        self.last_reason: EndReason | None = None
        self.checks = 0
        self.early_ends = 0

    def listen(
        self,
        listen: ListenSettings | None = None,
        *,
        turn: TurnSettings | None = None,
        echo_guard: bool = False,
    ) -> None:
        """Arm for one answer. With a model and ``turn`` settings, trailing silence becomes
        ``turn.max_silence_ms`` and pauses of ``turn.min_silence_ms`` ask the model."""
        base = listen or ListenSettings()
        self._pending = None
        self.pause = None
        self.last_reason = None
        if self.model and turn is not None:
            self.settings = turn
            base = replace(base, pause_ms=turn.min_silence_ms, trailing_silence_ms=turn.max_silence_ms)
        else:
            self.settings = None
            base = replace(base, pause_ms=None)
        self.endpointer.listen(base, echo_guard=echo_guard)

    def feed(self, frame: bytes, level: float | None = None) -> Event | CheckTurn | None:
        """One caller frame (``level``: its dBFS if measured already); endpointer events pass through, a
        pause becomes a ``CheckTurn`` request."""
        event = self.endpointer.feed(frame, level)
        return None if event is None else self.on_event(event)  # None: nearly every frame

    def on_event(self, event: Event) -> Event | CheckTurn | None:
        """What :meth:`feed` makes of an endpointer event: for a caller that feeds the endpointer itself
        (``ivr.call.listening``: one call less on every frame, which nearly always has no event)."""
        if isinstance(event, SpeechPaused):
            if self.settings is None:
                return None
            self._next += 1
            self._pending = self.pause = self._next
            self.checks += 1
            return CheckTurn(self._pending, event.pcm, self.endpointer.rate, event.paused_at_ms)
        if isinstance(event, SpeechResumed):
            self._pending = self.pause = None  # the caller went on: that pause's verdict no longer matters
            return None
        if isinstance(event, SpeechEnded):
            self._pending = None
            self.last_reason = "silence"
        elif isinstance(event, MaxLengthReached):
            self._pending = None
            self.last_reason = "max_length"
        elif isinstance(event, NoInput):
            self._pending = None
        return event

    def verdict(self, request: int, probability: float | None) -> SpeechEnded | None:
        """The model's answer for ``request`` (None: it failed). Returns the ended turn, if it ends now."""
        if request != self._pending or self.settings is None:
            return None  # stale: speech resumed, the turn already ended, or a new listen began
        self._pending = None
        if probability is None or probability < self.settings.threshold:
            return None  # not finished (or unknown): wait for more speech or max_silence_ms
        ended = self.endpointer.end_turn()
        if ended is not None:
            self.last_reason = "model"
            self.early_ends += 1
        return ended

    @property
    def waiting_for_model(self) -> bool:
        return self._pending is not None
