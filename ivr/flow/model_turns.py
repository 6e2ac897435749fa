"""Turn-taking keys of the flow language: when a caller's answer is over, and what a prompt ignores.

``end_of_turn`` tunes the end-of-turn model (Smart Turn, when installed): it is asked once the caller
has paused ``min_silence_ms``, ends the turn when it is at least ``threshold`` sure the caller has
finished, and ``max_silence_ms`` of silence ends it whatever the model says. With ``model: false`` (or
no model installed) silence alone decides, after ``endpointing_silence_ms``. Spoken digit strings
(``digits``, ``phone`` and ``alphanumeric`` captures) default to silence alone, after
``digits_silence_ms``: the model judges prosody and cannot know how many digits are still due.

With ``words`` (on by default where speech-to-text runs on this machine) the words said so far are
transcribed at each pause too, and the turn ends early only when they already answer the question (a
choice, a yes or no, a digit string of the capture's ``min_length``): VoiceXML's complete timeout. Words
heard with less than ``words_min_confidence`` never end it early: biased towards the question's choices,
Whisper writes a filler's "uhm" as "Medium." with low confidence, and ending there would take the wrong
answer while waiting costs only silence. Words that do not answer it yet wait up to ``max_silence_ms``; a digit string, which has no model, is judged at
its ``digits_silence_ms`` pause and, when still short, waits up to ``digits_incomplete_ms``.

``backchannel_ms``: speech over a prompt that ends within this long ("mm-hm", "okay") pauses the prompt
and then lets it play on; longer speech interrupts it. ``0`` makes any speech interrupt at once.

The flow's ``settings`` hold the defaults; an ``ask`` step may override any key (the others come from
the settings), ``say`` and ``play`` steps their ``backchannel_ms``.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from ivr.flow.model_types import _Model

SilenceMs = Annotated[int, Field(ge=20, le=10_000)]
Probability = Annotated[float, Field(gt=0.0, le=1.0)]
Confidence = Annotated[float, Field(ge=0.0, le=1.0)]
BackchannelMs = Annotated[int, Field(ge=0, le=3000)]

WordsCheck = bool | Literal["auto"]
"""Whether the words said so far are checked at a pause: ``auto`` where the call's speech-to-text runs on
this machine (offline Whisper), ``true`` with any engine (a cloud one bills each check), ``false`` never."""

DIGIT_STRING_TYPES = frozenset({"digits", "phone", "alphanumeric"})
"""Captures spoken as strings of symbols: the end-of-turn model is off for them by default."""


class EndOfTurnSettings(_Model):
    """The flow's end-of-turn defaults (``settings.end_of_turn``)."""

    model: bool = Field(
        default=True,
        description="Ask the end-of-turn model at pauses (when installed); false: silence alone ends a turn.",
    )
    min_silence_ms: SilenceMs = Field(
        default=200, description="Pause after which the model is asked: the earliest a turn can end."
    )
    max_silence_ms: SilenceMs = Field(
        default=1500, description="Silence that ends the turn whatever the model says."
    )
    threshold: Probability = Field(
        default=0.5, description="How sure the model must be that the caller has finished."
    )
    words: WordsCheck = Field(
        default="auto",
        description="At each pause also transcribe the words so far; the turn ends early only when they "
        "already answer the question. auto: where speech-to-text runs locally; true: always; false: never.",
    )
    words_min_confidence: Confidence = Field(
        default=0.6,
        description="Lowest speech-to-text confidence at which a pause's words may end the turn early; "
        "below it the turn waits for more speech or max_silence_ms (the answer is judged as usual).",
    )

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min_silence_ms > self.max_silence_ms:
            raise ValueError(
                f"min_silence_ms ({self.min_silence_ms}) must not exceed max_silence_ms ({self.max_silence_ms})"
            )
        return self


class EndOfTurn(_Model):
    """A question's end-of-turn overrides (``end_of_turn`` on an ``ask`` step); unset keys: the settings'."""

    model: bool | None = Field(
        default=None, description="Ask the end-of-turn model here (default: settings; off for digit strings)."
    )
    min_silence_ms: SilenceMs | None = None
    max_silence_ms: SilenceMs | None = None
    threshold: Probability | None = None
    words: WordsCheck | None = None
    words_min_confidence: Confidence | None = None

    def over(self, base: EndOfTurnSettings) -> EndOfTurnSettings:
        """These overrides applied to ``base`` (raises ValueError when the result is out of order)."""
        given = {k: v for k, v in self.model_dump().items() if v is not None}
        return EndOfTurnSettings.model_validate({**base.model_dump(), **given})
