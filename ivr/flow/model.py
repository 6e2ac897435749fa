"""The flow language as a pydantic schema: one source for validation and for ``flows/schema.json``.

A flow file is a mapping with ``name``, ``start``, ``settings``, ``vars``, global ``intents``,
``on_error`` and named ``steps``. A step's kind is the one kind key it carries (``say:``, ``ask:``,
``branch:`` ...), so flows read like prose rather than ``type: say`` records. Everything is frozen: the
engine shares one parsed flow between concurrent calls.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BeforeValidator,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    model_validator,
)

from ivr.flow.model_captures import (
    CAPTURE_TYPES,
    KEYED_TYPES,
    Capture,
    EnumValue,
    Options,
    Reprompt,
)
from ivr.flow.model_hours import ClosedDay, Hours
from ivr.flow.model_turns import BackchannelMs, EndOfTurn, EndOfTurnSettings
from ivr.flow.model_types import (
    DTMF_KEYS,
    DtmfKey,
    Expression,
    LanguageTag,
    Millis,
    Name,
    Phrases,
    Speech,
    StepRef,
    Template,
    Text,
    _Model,
)

__all__ = [
    "CAPTURE_TYPES",
    "DTMF_KEYS",
    "KEYED_TYPES",
    "STEP_KINDS",
    "Capture",
    "ClosedDay",
    "EnumValue",
    "Hours",
    "Options",
    "Reprompt",
]

STEP_KINDS: tuple[str, ...] = (
    "say",
    "play",
    "ask",
    "branch",
    "set",
    "webhook",
    "transfer",
    "hangup",
    "goto",
    "subflow",
    "return",
    "record",
    "language",
)
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


class RetryHandler(Reprompt):
    """VoiceXML-style counted handler for ``no_input`` or ``no_match``: ``prompt`` replaces the question,
    ``prefix`` is said before it; without either, ``settings.no_input_prompt``/``no_match_prompt`` is the
    prefix."""

    retries: int | None = Field(default=None, ge=0, le=20, description="Reprompts before giving up.")
    next: StepRef | None = Field(
        default=None, description="Where to go when retries run out (default: on_error)."
    )


class Choice(_Model):
    """One answer of a menu question."""

    phrases: Phrases = Field(
        default_factory=list, description="Words or phrases that pick this choice (or one list per language)."
    )
    dtmf: DtmfKey | None = None
    description: str | None = Field(
        default=None, description="What the choice means (helps the llm matcher)."
    )
    next: StepRef


def _yes_no_keys(value: Any) -> Any:
    """``confirm: {yes: a, no: b}`` reads as {True: a, False: b} in YAML 1.1; take it as meant."""
    if isinstance(value, dict):
        return {("yes" if k is True else "no" if k is False else k): v for k, v in value.items()}
    return value


class Confirm(_Model):
    yes: StepRef
    no: StepRef


class _StepBase(_Model):
    kind: ClassVar[str]
    description: str | None = Field(
        default=None, description="A note for people reading the flow or the graph."
    )


class SayStep(_StepBase):
    """Speak a template."""

    kind: ClassVar[str] = "say"
    say: Speech
    barge_in: bool | None = None
    backchannel_ms: BackchannelMs | None = None
    next: StepRef


class PlayStep(_StepBase):
    """Play a named audio file (resolved by the runtime's media layer)."""

    kind: ClassVar[str] = "play"
    play: Annotated[str, Field(min_length=1)]
    barge_in: bool | None = None
    backchannel_ms: BackchannelMs | None = None
    next: StepRef


class AskStep(_StepBase):
    """Prompt, then listen for speech and/or DTMF: a menu (``choices``), a slot (``capture``) or ``confirm``."""

    kind: ClassVar[str] = "ask"
    ask: Speech
    choices: dict[Name, Choice] | None = None
    capture: Capture | None = None
    confirm: Annotated[Confirm, BeforeValidator(_yes_no_keys)] | None = None
    options: Options | None = Field(
        default=None, description="A menu built from a list at run time (needs save and next)."
    )
    save: Name | None = Field(
        default=None,
        description="choices: receives the chosen choice's name; options: the chosen option's value.",
    )
    input: Literal["speech", "dtmf", "both"] = "both"
    barge_in: bool | None = None
    no_input: RetryHandler | None = None
    no_match: RetryHandler | None = None
    no_input_timeout_ms: Millis | None = None
    endpointing_silence_ms: Millis | None = None
    end_of_turn: EndOfTurn | None = Field(
        default=None, description="Overrides settings.end_of_turn keys for this question."
    )
    backchannel_ms: BackchannelMs | None = None
    matcher: MatcherName | None = None
    global_intents: bool = Field(default=True, description="Whether the flow's global intents work here.")
    next: StepRef | None = Field(
        default=None, description="capture, options: where to go once the answer is in."
    )

    @model_validator(mode="after")
    def _one_answer_kind(self) -> AskStep:
        given = [k for k in ("choices", "capture", "confirm", "options") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "an ask step needs exactly one of 'choices', 'capture', 'confirm' or 'options'"
                + (f" (found {', '.join(given)})" if given else "")
            )
        leads_on = self.capture is not None or self.options is not None
        if leads_on and self.next is None:
            raise ValueError(
                f"an ask step with '{given[0]}' needs 'next' (where to go once the answer is in)"
            )
        if not leads_on and self.next is not None:
            raise ValueError(
                "'next' belongs to capture and options questions; choices and confirm name their own targets"
            )
        if self.options is not None and self.save is None:
            raise ValueError("an ask step with 'options' needs 'save' (the variable for the chosen value)")
        if self.save is not None and self.choices is None and self.options is None:
            raise ValueError("'save' on an ask step stores the chosen choice; use capture.slot for captures")
        if not self.choices and self.choices is not None:
            raise ValueError("'choices' is empty")
        return self


class Condition(_Model):
    if_: Expression = Field(alias="if", description="Expression such as 'balance > 100' (not a template).")
    next: StepRef


class BranchStep(_StepBase):
    """Go to the first target whose condition is true, else to ``else``."""

    kind: ClassVar[str] = "branch"
    branch: Annotated[list[Condition], Field(min_length=1)]
    else_: StepRef = Field(alias="else")


class SetStep(_StepBase):
    """Assign variables. ``"{{ expr }}"`` alone keeps the expression's type; other strings are templates."""

    kind: ClassVar[str] = "set"
    set: Annotated[dict[Name, Any], Field(min_length=1)]
    next: StepRef


class WebhookSpec(_Model):
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    url: Template = Field(description="Template; may use env.X secrets.")
    headers: dict[str, Text] = Field(default_factory=dict, description="Templates; may use env.X secrets.")
    json_body: Any = Field(default=None, alias="json", description="JSON body; strings inside are templates.")
    timeout_ms: Annotated[int, Field(ge=100, le=120_000)] = 5000


class WebhookStep(_StepBase):
    """HTTP request performed by the runtime; the JSON response is saved into ``save``."""

    kind: ClassVar[str] = "webhook"
    webhook: WebhookSpec
    save: Name | None = None
    filler: Speech | None = Field(default=None, description="Overrides settings.filler while waiting.")
    next: StepRef
    on_error: StepRef | None = Field(
        default=None, description="On failure or non-2xx status (default: on_error)."
    )


class TransferSpec(_Model):
    endpoint: str | None = Field(default=None, description="Dial an endpoint, e.g. PJSIP/agent.")
    context: str | None = Field(default=None, description="Dialplan context (with extension).")
    extension: Text | None = None
    priority: int = Field(default=1, ge=1)
    timeout_s: Annotated[int, Field(ge=1, le=600)] = 30
    caller_id: Template | None = None
    variables: dict[Name, Text] = Field(
        default_factory=dict, description="Channel variables to set first (templates)."
    )

    @model_validator(mode="after")
    def _one_target(self) -> TransferSpec:
        if (self.endpoint is None) == (self.extension is None):
            raise ValueError(
                "a transfer needs either 'endpoint' or 'extension' (with optional context/priority)"
            )
        if self.endpoint is not None and self.context is not None:
            raise ValueError(
                "'context' is for dialplan transfers; an endpoint transfer takes 'endpoint' only"
            )
        return self


class TransferStep(_StepBase):
    """Hand the call to a dialplan target or an endpoint; the IVR's part of the call ends on success."""

    kind: ClassVar[str] = "transfer"
    transfer: TransferSpec
    on_failure: StepRef | None = Field(
        default=None, description="Busy, no answer or failure (default: on_error)."
    )


class HangupSpec(_Model):
    reason: str = "normal"


class HangupStep(_StepBase):
    kind: ClassVar[str] = "hangup"
    hangup: HangupSpec | None


class GotoStep(_StepBase):
    kind: ClassVar[str] = "goto"
    goto: StepRef


class SubflowStep(_StepBase):
    """Run another flow file (by stem) with its own variables, then continue at ``next``."""

    kind: ClassVar[str] = "subflow"
    subflow: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]+$")]
    with_: dict[Name, Any] = Field(default_factory=dict, alias="with", description="Subflow vars to set.")
    save: Name | None = Field(
        default=None, description="Receives the mapping the subflow's return step gives back."
    )
    next: StepRef


class ReturnStep(_StepBase):
    """End a subflow, giving values back to the caller flow (ends the call in a top-level flow)."""

    kind: ClassVar[str] = "return"
    return_: dict[Name, Any] | None = Field(alias="return")


class RecordSpec(_Model):
    """How a message is recorded: after a beep, until silence, the end key or the length limit."""

    max_ms: Annotated[int, Field(ge=1000, le=600_000)] = Field(
        default=60_000, description="Longest message; recording stops there."
    )
    end_silence_ms: Annotated[int, Field(ge=500, le=60_000)] = Field(
        default=3000, description="Silence after speech that ends the message."
    )
    no_input_timeout_ms: Millis | None = Field(
        default=None, description="Silence before anything is said that ends it (default settings)."
    )
    beep: bool = Field(default=True, description="Play a beep before recording.")
    end_key: DtmfKey | None = Field(default="#", description="Key that ends the message; null for none.")
    sensitive: bool = Field(
        default=False, description="The audio is measured, never stored: the record has no file."
    )


def _record_spec(value: Any) -> Any:
    return {} if value is None else value


class RecordStep(_StepBase):
    """Record the caller (a voicemail): stored as a WAV with the call record."""

    kind: ClassVar[str] = "record"
    record: Annotated[RecordSpec, BeforeValidator(_record_spec)]
    save: Name | None = Field(
        default=None, description="Receives {duration_s, ended_by, kept} once the recording ends."
    )
    next: StepRef
    on_error: StepRef | None = Field(
        default=None, description="When recording is not possible (default: on_error)."
    )


class LanguageStep(_StepBase):
    """Switch the call's language (a language menu's choice, or a template such as call.args.lang)."""

    kind: ClassVar[str] = "language"
    language: Template = Field(description="A language of the flow (settings.language or languages).")
    next: StepRef


def step_kind_of(value: Any) -> str | None:
    """The kind key of a raw step mapping (or a parsed step); None when there is not exactly one."""
    if isinstance(value, _StepBase):
        return value.kind
    if not isinstance(value, dict):
        return None
    found = [k for k in STEP_KINDS if k in value]
    return found[0] if len(found) == 1 else None


Step = Annotated[
    Annotated[SayStep, Tag("say")]
    | Annotated[PlayStep, Tag("play")]
    | Annotated[AskStep, Tag("ask")]
    | Annotated[BranchStep, Tag("branch")]
    | Annotated[SetStep, Tag("set")]
    | Annotated[WebhookStep, Tag("webhook")]
    | Annotated[TransferStep, Tag("transfer")]
    | Annotated[HangupStep, Tag("hangup")]
    | Annotated[GotoStep, Tag("goto")]
    | Annotated[SubflowStep, Tag("subflow")]
    | Annotated[ReturnStep, Tag("return")]
    | Annotated[RecordStep, Tag("record")]
    | Annotated[LanguageStep, Tag("language")],
    Discriminator(
        step_kind_of,
        custom_error_type="step_kind",
        custom_error_message="a step needs exactly one kind key",
    ),
]
AnyStep = (
    SayStep
    | PlayStep
    | AskStep
    | BranchStep
    | SetStep
    | WebhookStep
    | TransferStep
    | HangupStep
    | GotoStep
    | SubflowStep
    | ReturnStep
    | RecordStep
    | LanguageStep
)


class GlobalIntent(_Model):
    """Works from any question (unless the step turns global intents off)."""

    phrases: Phrases = Field(default_factory=list, description="Words that trigger it (or per language).")
    dtmf: DtmfKey | None = None
    description: str | None = None
    next: StepRef | None = Field(default=None, description="Step to go to.")
    repeat: bool = Field(default=False, description="Repeat the current question instead of going anywhere.")

    @model_validator(mode="after")
    def _one_action(self) -> GlobalIntent:
        if (self.next is None) == (not self.repeat):
            raise ValueError("a global intent needs either 'next: STEP' or 'repeat: true'")
        if not self.phrases and self.dtmf is None:
            raise ValueError("a global intent needs 'phrases' or 'dtmf'")
        return self


class Flow(_Model):
    """A call flow file."""

    name: Annotated[str, Field(min_length=1)]
    description: str | None = None
    start: StepRef
    settings: FlowSettings = Field(default_factory=lambda: FlowSettings())
    vars: dict[Name, Any] = Field(
        default_factory=dict, description="Initial variables (callers may override)."
    )
    intents: dict[Name, GlobalIntent] = Field(default_factory=dict)
    hours: dict[Name, Hours] = Field(
        default_factory=dict, description="Business-hours calendars, read as hours.NAME.open."
    )
    on_error: StepRef | None = Field(
        default=None, description="Step for provider errors and exhausted retries."
    )
    steps: Annotated[dict[Name, Step], Field(min_length=1)]

    def step(self, name: str) -> AnyStep:
        step: AnyStep = self.steps[name]
        return step
