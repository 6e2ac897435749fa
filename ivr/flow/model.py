"""The flow language as a pydantic schema: one source for validation and for ``flows/schema.json``.

A flow file is a mapping with ``name``, ``start``, ``settings``, ``vars``, global ``intents``,
``on_error`` and named ``steps``. A step's kind is the one kind key it carries (``say:``, ``ask:``,
``branch:`` ...), so flows read like prose rather than ``type: say`` records. Everything is frozen: the
engine shares one parsed flow between concurrent calls.

This module holds the steps and the flow itself; their parts live beside it and are re-exported here:
``settings`` in :mod:`ivr.flow.model_settings`, captures and reprompts in :mod:`ivr.flow.model_captures`,
business hours in :mod:`ivr.flow.model_hours`, turn-taking keys in :mod:`ivr.flow.model_turns`, and the
shared building blocks in :mod:`ivr.flow.model_types`.
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
from ivr.flow.model_settings import DEFAULT_REPEAT_PHRASES, FlowSettings, LanguageSettings, MatcherName
from ivr.flow.model_turns import BackchannelMs, EndOfTurn
from ivr.flow.model_types import (
    DTMF_KEYS,
    DtmfKey,
    Expression,
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
    "DEFAULT_REPEAT_PHRASES",
    "DTMF_KEYS",
    "KEYED_TYPES",
    "STEP_KINDS",
    "Capture",
    "ClosedDay",
    "EnumValue",
    "FlowSettings",
    "Hours",
    "LanguageSettings",
    "MatcherName",
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
