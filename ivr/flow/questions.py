"""What an answer means for an ``ask`` step: pure functions from (step, what was said or pressed) to an
:data:`Answer`, plus the ``Listen`` settings of a question. The engine only applies the answer.

Precedence: a menu's own choices (and a dynamic menu's options) beat global intents (the author wrote
them for this question); for captures and ``confirm`` global intents come first, and a free-text capture
takes an intent only when the whole utterance is the intent's phrase, so "please ask the agent to ring"
is a note, not "agent". The built-in ``repeat`` intent (``settings.repeat_phrases``) works in every
question that takes global intents, unless the flow defines its own ``repeat``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ivr.flow import captures
from ivr.flow.actions import Listen
from ivr.flow.captures import CaptureContext, Rejected, Understood
from ivr.flow.captures.words import yes_no
from ivr.flow.intents import Candidate, match, match_dtmf, normalise
from ivr.flow.model import KEYED_TYPES, AskStep, Flow, FlowSettings
from ivr.flow.model_turns import DIGIT_STRING_TYPES, EndOfTurnSettings
from ivr.flow.model_types import phrases_for

REPEAT = "repeat"
"""Name of the built-in intent that repeats the current question."""

DIGIT_HINTS: dict[str, tuple[str, ...]] = {
    "en": ("zero", "oh", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "double"),
}
"""Recognition hints of spoken digit strings, per language (others: none; number words become digits)."""
YES_NO_HINTS: dict[str, tuple[str, ...]] = {"en": ("yes", "no")}
BACKCHANNELS = frozenset(
    {
        "",
        "mm",
        "mmm",
        "mhm",
        "mm hm",
        "mm hmm",
        "hmm",
        "hm",
        "uh huh",
        "uh",
        "um",
        "uhm",
        "ah",
        "aha",
        "oh",
        "ok",
        "okay",
        "yeah",
        "yep",
        "right",
        "alright",
        "all right",
        "i see",
        "sure",
        "got it",
        "oui",
        "d accord",
        "ja",
        "genau",
        "vale",
        "si",
    }
)
"""What callers say over a prompt to show they listen (any language the flows speak; lower case,
punctuation as spaces). A question's own answers never count as one ("okay" to "say okay to confirm")."""


def is_backchannel(text: str, answers: Sequence[str] = ()) -> bool:
    """Short speech over a prompt that only acknowledges it (or was no words at all)."""
    said = " ".join(normalise(text))
    if said not in BACKCHANNELS and said.replace(" ", "") not in BACKCHANNELS:
        return False
    return said == "" or all(" ".join(normalise(a)) != said for a in answers)


@dataclass(frozen=True)
class Picked:
    """A menu choice."""

    name: str


@dataclass(frozen=True)
class Chosen:
    """A dynamic option, by its position (0-based) in the list read out."""

    index: int


@dataclass(frozen=True)
class Captured:
    """A slot value (string for digits/text/enum/date/time/phone/alphanumeric, number, or bool)."""

    value: Any


@dataclass(frozen=True)
class Invalid:
    """Understood as ``value``, but it broke the capture's rule ``reason``: a no_match of its own."""

    value: Any
    reason: str


@dataclass(frozen=True)
class Confirmed:
    yes: bool


@dataclass(frozen=True)
class IntentHit:
    name: str


@dataclass(frozen=True)
class NoMatch:
    pass


@dataclass(frozen=True)
class NeedsModel:
    """Keywords found nothing and the question uses the LLM matcher."""


Answer = Picked | Chosen | Captured | Invalid | Confirmed | IntentHit | NoMatch | NeedsModel


@dataclass(frozen=True)
class Option:
    """One entry of a dynamic menu, as read out: key ``"1"``.. ``"9"``, label, stored value, phrases."""

    key: str
    label: str
    value: Any
    phrases: tuple[str, ...] = ()


def is_digit_capture(step: AskStep) -> bool:
    """Keyed entry (keys are data, global DTMF intents are suspended)."""
    return step.capture is not None and step.capture.type in KEYED_TYPES


def is_yes_no(step: AskStep) -> bool:
    return step.confirm is not None or (step.capture is not None and step.capture.type == "yes_no")


def intent_candidates(flow: Flow, step: AskStep, language: str) -> list[Candidate]:
    if not step.global_intents:
        return []
    out = [Candidate(n, phrases_for(i.phrases, language), i.dtmf) for n, i in flow.intents.items()]
    if REPEAT not in flow.intents:
        repeat = phrases_for(flow.settings.repeat_phrases, language)
        if repeat:
            out.append(Candidate(REPEAT, repeat, None))
    return out


def choice_candidates(step: AskStep, language: str, options: Sequence[Option] = ()) -> list[Candidate]:
    """Menu choices, an enum capture's values, or a dynamic menu's options (named by position)."""
    if step.choices:
        return [Candidate(n, phrases_for(c.phrases, language), c.dtmf) for n, c in step.choices.items()]
    if step.capture is not None and step.capture.values:
        return [
            Candidate(n, phrases_for(v.synonyms, language), v.dtmf) for n, v in step.capture.values.items()
        ]
    return [Candidate(f"option_{i}", (o.label, *o.phrases), o.key) for i, o in enumerate(options)]


def _chosen(name: str) -> Chosen:
    return Chosen(int(name.removeprefix("option_")))


def _yes_no_answer(step: AskStep, yes: bool) -> Answer:
    return Confirmed(yes) if step.confirm is not None else Captured(yes)


def _exact(text: str, phrases: Sequence[str]) -> bool:
    said = normalise(text)
    return any(normalise(p) == said for p in phrases)


def _intent_phrases(flow: Flow, name: str, language: str) -> tuple[str, ...]:
    intent = flow.intents.get(name)
    if intent is not None:
        return phrases_for(intent.phrases, language)
    return phrases_for(flow.settings.repeat_phrases, language)


def _captured(result: Understood | Rejected | None) -> Answer:
    if isinstance(result, Understood):
        return Captured(result.value)
    if isinstance(result, Rejected):
        return Invalid(result.value, result.reason)
    return NoMatch()


def interpret_speech(
    flow: Flow,
    step: AskStep,
    text: str,
    ctx: CaptureContext | None = None,
    options: Sequence[Option] = (),
    *,
    confirming: bool = False,
) -> Answer:
    """Meaning of a (non-empty, confident enough) utterance; ``confirming``: the yes/no of a read-back."""
    ctx = ctx or CaptureContext(language=flow.settings.language)
    language = ctx.language
    intents = intent_candidates(flow, step, language)
    if step.choices or step.options is not None:
        name = match(text, choice_candidates(step, language, options))
        if name is not None:
            return Picked(name) if step.choices else _chosen(name)
        name = match(text, intents)
        if name is not None:
            return IntentHit(name)
        matcher = step.matcher or flow.settings.matcher
        return NeedsModel() if matcher == "llm" and step.choices else NoMatch()
    cap = step.capture
    free_text = not confirming and cap is not None and cap.type == "text"
    # Free text takes an intent only when said exactly as one of its phrases; with none said so, the
    # answer is the caller's words, and the fuzzy tiers (the engine's costliest work, once per answer on
    # a thread that shares the GIL with the calls' audio) could change nothing.
    if not free_text or any(_exact(text, _intent_phrases(flow, c.name, language)) for c in intents):
        name = match(text, intents)
        if name is not None and (not free_text or _exact(text, _intent_phrases(flow, name, language))):
            return IntentHit(name)
    if confirming or is_yes_no(step):
        answer = yes_no(text, language)
        if answer is None:
            return NoMatch()
        return Confirmed(answer) if confirming else _yes_no_answer(step, answer)
    assert cap is not None
    if cap.type == "enum":
        value = match(text, choice_candidates(step, language))
        return NoMatch() if value is None else Captured(value)
    return _captured(captures.from_speech(cap, text, ctx))


def interpret_key(
    flow: Flow,
    step: AskStep,
    key: str,
    options: Sequence[Option] = (),
    *,
    language: str | None = None,
    confirming: bool = False,
) -> Answer:
    """Meaning of one key in a question that is not a keyed capture (or in a read-back's yes/no)."""
    language = language or flow.settings.language
    name = match_dtmf(key, intent_candidates(flow, step, language))
    if name is not None:
        return IntentHit(name)
    if confirming or is_yes_no(step):
        if key not in ("1", "2"):
            return NoMatch()
        return Confirmed(key == "1") if confirming else _yes_no_answer(step, key == "1")
    name = match_dtmf(key, choice_candidates(step, language, options))
    if name is None:
        return NoMatch()
    if step.options is not None:
        return _chosen(name)
    return Picked(name) if step.choices else Captured(name)


def interpret_digits(step: AskStep, digits: str, ctx: CaptureContext | None = None) -> Answer:
    """A finished key entry (or spoken digits) for a keyed capture."""
    cap = step.capture
    assert cap is not None
    return _captured(captures.from_keys(cap, digits, ctx or CaptureContext()))


def _first(value: int | None, default: int) -> int:
    return default if value is None else value


def capture_hints(step: AskStep, language: str) -> tuple[str, ...]:
    """What a capture without its own values expects: digit words, yes and no (ASR bias)."""
    lang = language.split("-")[0].lower()
    cap = step.capture
    if is_yes_no(step):
        return YES_NO_HINTS.get(lang, ())
    if cap is not None and cap.type in DIGIT_STRING_TYPES | {"number"}:
        return DIGIT_HINTS.get(lang, ())
    return ()


def end_of_turn(step: AskStep, settings: FlowSettings, *, confirming: bool = False) -> EndOfTurnSettings:
    """The question's end-of-turn settings: the step's keys over the flow's; digit strings (not their
    yes/no read-back) default to silence alone, since the model cannot know how many digits are due."""
    base = settings.end_of_turn
    own = step.end_of_turn
    turn = own.over(base) if own is not None else base
    digit_string = step.capture is not None and step.capture.type in DIGIT_STRING_TYPES and not confirming
    if digit_string and (own is None or own.model is None):
        turn = turn.model_copy(update={"model": False})
    return turn


def endpointing_silence(step: AskStep, settings: FlowSettings, *, confirming: bool = False) -> int:
    """Trailing silence that ends an answer when silence alone decides."""
    if step.endpointing_silence_ms is not None:
        return step.endpointing_silence_ms
    if step.capture is not None and step.capture.type in DIGIT_STRING_TYPES and not confirming:
        return settings.digits_silence_ms
    return settings.endpointing_silence_ms


def backchannel_ms(step: Any, settings: FlowSettings) -> int:
    """A prompt's backchannel length: the step's own ``backchannel_ms``, else the flow's."""
    own = getattr(step, "backchannel_ms", None)
    return settings.backchannel_ms if own is None else int(own)


def listen_for(
    flow: Flow,
    step: AskStep,
    step_name: str,
    settings: FlowSettings,
    *,
    language: str | None = None,
    stt: str | None = None,
    stt_model: str | None = None,
    options: Sequence[Option] = (),
    confirming: bool = False,
) -> Listen:
    """The Listen action of a question: input kinds, timeouts, key entry and recognition hints."""
    language = language or settings.language
    cap = step.capture
    keyed = is_digit_capture(step) and not confirming
    if confirming:
        hints = ["yes", "no"]
    else:
        hints = [
            p
            for c in choice_candidates(step, language, options)
            for p in (c.name.replace("_", " "), *c.phrases)
        ]
        if step.options is not None:
            hints = [p for o in options for p in (o.label, *o.phrases)]
        hints += capture_hints(step, language)
    # The flow's own intents, but not the built-in repeat's phrases ("say that again", "what did you say"):
    # a dozen generic words in Whisper's prompt drown the question's own answers (tiny.en heard "Large."
    # as "Watch." with them, "large." without), and speech-to-text hears such phrases unaided.
    own = [c for c in intent_candidates(flow, step, language) if c.name != REPEAT or REPEAT in flow.intents]
    hints += [p for c in own for p in c.phrases]
    max_digits: int | None = 1
    terminator: str | None = None
    if keyed and cap is not None:
        max_digits, terminator = captures.key_entry(cap)
    turn = end_of_turn(step, settings, confirming=confirming)
    silence = endpointing_silence(step, settings, confirming=confirming)
    digit_string = cap is not None and cap.type in DIGIT_STRING_TYPES and not confirming
    incomplete = settings.digits_incomplete_ms if digit_string and not turn.model else turn.max_silence_ms
    return Listen(
        step=step_name,
        speech=step.input != "dtmf",
        dtmf=step.input != "speech",
        no_input_timeout_ms=_first(step.no_input_timeout_ms, settings.no_input_timeout_ms),
        endpointing_silence_ms=silence,
        max_utterance_ms=settings.max_utterance_ms,
        inter_digit_timeout_ms=_first(
            cap.inter_digit_timeout_ms if cap else None, settings.inter_digit_timeout_ms
        ),
        max_digits=max_digits,
        terminator=terminator,
        global_dtmf=step.global_intents and not keyed,
        hints=tuple(dict.fromkeys(hints))[:100],
        sensitive=bool(cap and cap.sensitive),
        language=language,
        stt=stt if stt is not None else settings.stt,
        stt_model=stt_model if stt_model is not None else settings.stt_model,
        turn_model=turn.model,
        turn_min_silence_ms=turn.min_silence_ms,
        turn_max_silence_ms=turn.max_silence_ms,
        turn_threshold=turn.threshold,
        words_check=turn.words,
        incomplete_silence_ms=max(silence, incomplete),
        backchannel_ms=backchannel_ms(step, settings),
    )
