"""Spoken prompts as sequences of parts, and every fixed text a flow can say (for ``ivr prerender``).

A reprompt is the handler's prefix followed by the question, a dynamic menu is the question followed by
one part per option: each part is rendered on its own and is cacheable when its source has no template,
so the fixed parts ("Sorry, I didn't hear anything.", the question) come from the prompt cache even when
another part is rendered per call. :func:`fixed_texts` lists those parts for every language of a flow;
the engine and ``ivr prerender`` normalise text the same way (:func:`spoken_text`), so cache keys match.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ivr.flow.actions import PromptPart
from ivr.flow.model import AskStep, Flow, FlowSettings, SayStep, WebhookStep
from ivr.flow.model_types import text_for
from ivr.flow.templates import is_template, render


def spoken_text(text: str) -> str:
    """Whitespace folded as TTS hears it: the engine and the prerenderer key the cache on this."""
    return " ".join(text.split())


def part(source: str, context: Mapping[str, Any]) -> PromptPart:
    """Render one part; cacheable when the source holds no template."""
    fixed = not is_template(source)
    return PromptPart(spoken_text(source if fixed else render(source, context)), fixed)


def speech_part(
    value: str | Mapping[str, str], language: str, default: str, context: Mapping[str, Any]
) -> PromptPart:
    """The ``language`` variant of a spoken text, rendered as one part."""
    source = text_for(value, language, default)
    return part(source if source is not None else "", context)


def nth(prompts: list[Any], count: int) -> Any:
    """The n-th of a handler's prompts (1-based count; the last one repeats)."""
    return prompts[min(count, len(prompts)) - 1]


@dataclass(frozen=True)
class FixedText:
    """A text a call can say that holds no template: prerender it with ``settings`` for ``language``."""

    text: str
    language: str
    settings: FlowSettings


def _spoken_values(flow: Flow) -> Iterator[str | Mapping[str, str]]:
    s = flow.settings
    yield s.no_input_prompt
    yield s.no_match_prompt
    yield s.invalid_prompt
    if s.filler is not None:
        yield s.filler
    if s.resume_prompt is not None:
        yield s.resume_prompt
    for step in flow.steps.values():
        if isinstance(step, SayStep):
            yield step.say
        elif isinstance(step, WebhookStep) and step.filler is not None:
            yield step.filler
        elif isinstance(step, AskStep):
            yield step.ask
            for handler in (step.no_input, step.no_match, step.capture.invalid if step.capture else None):
                if handler is None:
                    continue
                yield from handler.prompt or ()
                yield from handler.prefix or ()
            if step.capture is not None and isinstance(step.capture.confirm, str | dict):
                yield step.capture.confirm


def fixed_texts(flow: Flow, extra: list[str] | None = None) -> list[FixedText]:
    """Every fixed text of ``flow`` in every language it speaks, once each, in flow order."""
    languages = flow.settings.spoken_languages
    seen: dict[tuple[str, str], FixedText] = {}
    values: list[str | Mapping[str, str]] = [*_spoken_values(flow), *(extra or [])]
    for value in values:
        for language in languages:
            text = text_for(value, language, flow.settings.language)
            if text is None or is_template(text):
                continue
            key = (spoken_text(text), language)
            seen.setdefault(key, FixedText(key[0], language, flow.settings))
    return list(seen.values())
