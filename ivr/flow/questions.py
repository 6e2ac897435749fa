"""What an answer means for an ``ask`` step: pure functions from (step, what was said or pressed) to an
:data:`Answer`, plus the ``Listen`` settings of a question. The engine only applies the answer.

Precedence: a menu's own choices beat global intents (the author wrote them for this question); for
captures and ``confirm`` global intents come first, and a free-text capture takes an intent only when
the whole utterance is the intent's phrase, so "please ask the agent to ring" is a note, not "agent".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ivr.flow.actions import Listen
from ivr.flow.intents import Candidate, match, match_dtmf, normalise, parse_digits, parse_number, parse_yes_no
from ivr.flow.model import AskStep, Flow, FlowSettings


@dataclass(frozen=True)
class Picked:
    """A menu choice."""

    name: str


@dataclass(frozen=True)
class Captured:
    """A slot value (string for digits/text/enum, number, or bool for yes_no)."""

    value: Any


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


Answer = Picked | Captured | Confirmed | IntentHit | NoMatch | NeedsModel


def is_digit_capture(step: AskStep) -> bool:
    """Digit entry (keys are data, global DTMF intents are suspended)."""
    return step.capture is not None and step.capture.type in ("digits", "number")


def is_yes_no(step: AskStep) -> bool:
    return step.confirm is not None or (step.capture is not None and step.capture.type == "yes_no")


def intent_candidates(flow: Flow, step: AskStep) -> list[Candidate]:
    if not step.global_intents:
        return []
    return [Candidate(n, tuple(i.phrases), i.dtmf) for n, i in flow.intents.items()]


def choice_candidates(step: AskStep) -> list[Candidate]:
    """Menu choices, or an enum capture's values."""
    if step.choices:
        return [Candidate(n, tuple(c.phrases), c.dtmf) for n, c in step.choices.items()]
    if step.capture is not None and step.capture.values:
        return [Candidate(n, tuple(v.synonyms), v.dtmf) for n, v in step.capture.values.items()]
    return []


def _yes_no_answer(step: AskStep, yes: bool) -> Answer:
    return Confirmed(yes) if step.confirm is not None else Captured(yes)


def _exact(text: str, phrases: list[str]) -> bool:
    said = normalise(text)
    return any(normalise(p) == said for p in phrases)


def interpret_speech(flow: Flow, step: AskStep, text: str) -> Answer:
    """Meaning of a (non-empty, confident enough) utterance."""
    intents = intent_candidates(flow, step)
    if step.choices:
        name = match(text, choice_candidates(step))
        if name is not None:
            return Picked(name)
        name = match(text, intents)
        if name is not None:
            return IntentHit(name)
        matcher = step.matcher or flow.settings.matcher
        return NeedsModel() if matcher == "llm" else NoMatch()
    cap = step.capture
    name = match(text, intents)
    if name is not None and (cap is None or cap.type != "text" or _exact(text, flow.intents[name].phrases)):
        return IntentHit(name)
    if is_yes_no(step):
        answer = parse_yes_no(text)
        return NoMatch() if answer is None else _yes_no_answer(step, answer)
    assert cap is not None
    if cap.type == "digits":
        digits = parse_digits(text)
        return NoMatch() if digits is None else interpret_digits(step, digits)
    if cap.type == "number":
        return _number(step, parse_number(text))
    if cap.type == "enum":
        value = match(text, choice_candidates(step))
        return NoMatch() if value is None else Captured(value)
    # Free text as said, without the sentence punctuation STT engines add ("12 Main Street.").
    said = text.strip().rstrip(".!?,;: ").strip()
    return Captured(said) if said else NoMatch()


def interpret_key(flow: Flow, step: AskStep, key: str) -> Answer:
    """Meaning of one key in a question that is not a digit capture."""
    name = match_dtmf(key, intent_candidates(flow, step))
    if name is not None:
        return IntentHit(name)
    if is_yes_no(step):
        return _yes_no_answer(step, key == "1") if key in ("1", "2") else NoMatch()
    name = match_dtmf(key, choice_candidates(step))
    if name is None:
        return NoMatch()
    return Picked(name) if step.choices else Captured(name)


def interpret_digits(step: AskStep, digits: str) -> Answer:
    """A finished digit entry (keys or spoken) for a digits or number capture."""
    cap = step.capture
    assert cap is not None
    if cap.type == "number":
        return _number(step, float(digits) if digits else None)
    ok = len(digits) >= (cap.min_length or 1) and (cap.max_length is None or len(digits) <= cap.max_length)
    return Captured(digits) if ok else NoMatch()


def _number(step: AskStep, value: float | None) -> Answer:
    cap = step.capture
    assert cap is not None
    if (
        value is None
        or (cap.min is not None and value < cap.min)
        or (cap.max is not None and value > cap.max)
    ):
        return NoMatch()
    return Captured(int(value) if value == int(value) else value)


def _first(value: int | None, default: int) -> int:
    return default if value is None else value


def listen_for(flow: Flow, step: AskStep, step_name: str, settings: FlowSettings) -> Listen:
    """The Listen action of a question: input kinds, timeouts, digit entry and recognition hints."""
    cap = step.capture
    digit_mode = is_digit_capture(step)
    hints = [p for c in choice_candidates(step) for p in (c.name.replace("_", " "), *c.phrases)]
    hints += [p for c in intent_candidates(flow, step) for p in c.phrases]
    return Listen(
        step=step_name,
        speech=step.input != "dtmf",
        dtmf=step.input != "speech",
        no_input_timeout_ms=_first(step.no_input_timeout_ms, settings.no_input_timeout_ms),
        endpointing_silence_ms=_first(step.endpointing_silence_ms, settings.endpointing_silence_ms),
        max_utterance_ms=settings.max_utterance_ms,
        inter_digit_timeout_ms=_first(
            cap.inter_digit_timeout_ms if cap else None, settings.inter_digit_timeout_ms
        ),
        max_digits=(cap.max_length if cap is not None else None) if digit_mode else 1,
        terminator=((cap.terminator if cap is not None else None) or "#") if digit_mode else None,
        global_dtmf=step.global_intents and not digit_mode,
        hints=tuple(dict.fromkeys(hints))[:100],
        sensitive=bool(cap and cap.sensitive),
        language=settings.language,
        stt=settings.stt,
        stt_model=settings.stt_model,
    )
