"""Where a flow's spoken texts are, by key path: each language variant on its own, so the validator
reports a template error at the variant's line (``steps.welcome.say.fr-FR``)."""

from __future__ import annotations

from collections.abc import Mapping

from ivr.flow.errors import KeyPath
from ivr.flow.model import AskStep
from ivr.flow.model_types import variants


def speech_sites(path: KeyPath, value: str | Mapping[str, str]) -> list[tuple[KeyPath, str]]:
    """(key path, text) of every variant of one spoken text."""
    return [((*path, lang) if lang is not None else path, text) for lang, text in variants(value)]


def reprompt_sites(base: KeyPath, step: AskStep) -> list[tuple[KeyPath, str]]:
    """Every reprompt text of a question: handlers' and the capture's ``invalid`` prompts and prefixes
    (a capture's ``confirm`` text is checked with ``heard`` and ``value`` known: see feature_checks)."""
    out: list[tuple[KeyPath, str]] = []
    handlers = [("no_input",), ("no_match",)], [step.no_input, step.no_match]
    keys: list[tuple[KeyPath, object]] = list(zip(handlers[0], handlers[1], strict=True))
    if step.capture is not None:
        keys.append((("capture", "invalid"), step.capture.invalid))
    for where, handler in keys:
        if handler is None:
            continue
        for field in ("prompt", "prefix"):
            for i, text in enumerate(getattr(handler, field) or []):
                out += speech_sites((*base, *where, field, i), text)
    return out
