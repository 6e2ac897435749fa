"""The schema of a flow's ``settings``: per-call defaults (language, voice, engines, timeouts, reprompt
texts), and the per-language overrides of a multilingual flow (``settings.languages``).

Split from :mod:`ivr.flow.model` (which re-exports these and holds the steps and the flow) only to keep
each module readable.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from ivr.flow.model_turns import BackchannelMs, EndOfTurnSettings
from ivr.flow.model_types import LanguageTag, Millis, Phrases, Speech, _Model

__all__ = ["DEFAULT_REPEAT_PHRASES", "FlowSettings", "LanguageSettings", "MatcherName"]

MatcherName = Literal["keyword", "llm"]
DEFAULT_REPEAT_PHRASES = (
    "repeat",
    "repeat that",
    "say that again",
    "say it again",
    "what did you say",
    "come again",
    "pardon",
    "sorry what",
)


class LanguageSettings(_Model):
    """Engines and voice for one language of a multilingual flow (unset keys: the flow's settings)."""

    voice: str | None = None
    stt: str | None = None
    stt_model: str | None = None
    tts: str | None = None
    tts_model: str | None = None
    tts_instructions: str | None = None


class FlowSettings(_Model):
    """Per-call defaults, including the speech keys the media/speech layer reads."""

    language: LanguageTag = Field(
        default="en-US", description="BCP-47 language a call starts in (STT, TTS and number words)."
    )
    languages: dict[LanguageTag, LanguageSettings] = Field(
        default_factory=dict,
        description="More languages the flow speaks, each with optional engines and voice.",
    )
    timezone: str = Field(default="UTC", description="IANA time zone of now, call.started and dates.")
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$", description="Default money capture currency.")
    voice: str | None = Field(default=None, description="TTS voice; None uses the runtime's default.")
    barge_in: bool = Field(default=True, description="Whether callers may interrupt prompts by default.")
    no_input_timeout_ms: Millis = Field(default=5000, description="Silence after a question before no_input.")
    max_retries: int = Field(default=2, ge=0, le=20, description="Default reprompts for no_input/no_match.")
    min_confidence: float = Field(
        default=0.0, ge=0.0, le=1.0, description="Lower STT confidence counts as no_match."
    )
    matcher: MatcherName = Field(default="keyword", description="How spoken answers are matched to choices.")
    llm_model: str = Field(default="gpt-4o-mini", description="Chat model for the llm matcher.")
    stt: str | None = Field(
        default=None, description="Speech-to-text engine name; None uses the runtime default."
    )
    stt_model: str | None = None
    tts: str | None = Field(
        default=None, description="Text-to-speech engine name; None uses the runtime default."
    )
    tts_model: str | None = None
    tts_instructions: str | None = Field(
        default=None, description="Speaking style for TTS engines that take it."
    )
    endpointing_silence_ms: Millis = Field(
        default=700, description="Trailing silence that ends an utterance when silence alone decides."
    )
    end_of_turn: EndOfTurnSettings = Field(
        default_factory=lambda: EndOfTurnSettings(),
        description="End-of-turn model settings: asked at pauses, ends a finished answer early.",
    )
    digits_silence_ms: Millis = Field(
        default=1500,
        description="Trailing silence that ends a spoken digit string (digits, phone, alphanumeric captures).",
    )
    digits_incomplete_ms: Millis = Field(
        default=2500,
        description="Silence that ends a spoken digit string whose words, checked at its digits_silence_ms "
        "pause, are still shorter than the capture's min_length (end_of_turn.words).",
    )
    backchannel_ms: BackchannelMs = Field(
        default=600,
        description="Speech over a prompt shorter than this (mm-hm, okay) lets the prompt play on; 0: any interrupts.",
    )
    max_utterance_ms: Millis = Field(default=15_000, description="Longest utterance before it is cut off.")
    inter_digit_timeout_ms: Millis = Field(
        default=3000, description="Pause between DTMF digits that ends entry."
    )
    filler: Speech | None = Field(
        default="One moment, please.", description="Said while a webhook or provider is slow; null for none."
    )
    filler_after_ms: Millis = Field(
        default=1500,
        description="The longest silence a waiting caller hears: the filler (then hold tones) fill longer waits.",
    )
    hold_tone: bool = Field(
        default=True,
        description="A soft tone repeats while the caller waits and no filler can be said (or after it).",
    )
    no_input_prompt: Speech = Field(
        default="Sorry, I didn't hear anything.",
        description="Default no_input reprompt prefix (then the question again).",
    )
    no_match_prompt: Speech = Field(
        default="Sorry, I didn't understand.",
        description="Default no_match reprompt prefix (then the question again).",
    )
    invalid_prompt: Speech = Field(
        default="Sorry, that is not a valid answer.",
        description="Default prefix when an answer breaks a capture rule (then the question again).",
    )
    confirm_prompt: Speech = Field(
        default="I heard {{ heard }}. Is that right?",
        description="Read-back of a capture with confirm: true (heard is the value as spoken).",
    )
    option_prompt: Speech = Field(
        default="For {{ label }}, press {{ key }}.", description="How each dynamic option is read out."
    )
    resume_prompt: Speech | None = Field(
        default="Sorry, we were cut off for a moment. Let's go on.",
        description=(
            "Said when another instance resumes the call at its step (the one serving it stopped); "
            "null for none."
        ),
    )
    repeat_phrases: Phrases = Field(
        default_factory=lambda: list(DEFAULT_REPEAT_PHRASES),
        description="What makes any question repeat itself (a built-in intent); [] turns it off.",
    )

    @property
    def spoken_languages(self) -> tuple[str, ...]:
        """Every language the flow speaks: the starting one first."""
        return (self.language, *(tag for tag in self.languages if tag.lower() != self.language.lower()))

    def for_language(self, language: str) -> FlowSettings:
        """These settings as a call in ``language`` uses them: that language's engines and voice."""
        from ivr.flow.model_types import language_key

        own = self.languages.get(language_key(self.languages, language) or "")
        update: dict[str, Any] = {"language": language}
        if own is not None:
            update.update({k: v for k, v in own.model_dump().items() if v is not None})
        return self.model_copy(update=update)

    @model_validator(mode="after")
    def _known_timezone(self) -> FlowSettings:
        from ivr.flow.clock import check_timezone

        check_timezone(self.timezone, "settings.timezone")
        return self
