"""Where a flow's texts and templates are, by key path: each spoken language variant on its own, so the
validator reports a template error at the variant's line (``steps.welcome.say.fr-FR``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ivr.flow.errors import KeyPath
from ivr.flow.model import (
    AskStep,
    BranchStep,
    Flow,
    ReturnStep,
    SayStep,
    SetStep,
    SubflowStep,
    TransferStep,
    WebhookStep,
)
from ivr.flow.model_types import variants
from ivr.flow.templates import is_template, strings_in, whole_expression


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


@dataclass(frozen=True)
class Site:
    """One template in a flow: where it is, its source, and what the checks need to know about it."""

    path: KeyPath
    source: str
    expression: bool
    prompt: bool = False
    env_ok: bool = False
    exposed: str | None = None  # where a sensitive value would end up, if this site used one


def value_sites(base: KeyPath, value: Any) -> list[Site]:
    """The templates inside a YAML value (a ``set`` or webhook ``json`` body), by key path."""
    sites = []
    for rel, text in strings_in(value):
        expr = whole_expression(text)
        if expr is not None:
            sites.append(Site((*base, *rel), expr, True))
        elif is_template(text):
            sites.append(Site((*base, *rel), text, False))
    return sites


def template_sites(flow: Flow) -> list[Site]:
    """Every template of every step, with how it is used (spoken, env allowed, where it is exposed)."""
    sites: list[Site] = []
    for name, step in flow.steps.items():
        b: KeyPath = ("steps", name)
        if isinstance(step, SayStep):
            sites += [Site(p, t, False, prompt=True) for p, t in speech_sites((*b, "say"), step.say)]
        elif isinstance(step, AskStep):
            sites += [Site(p, t, False, prompt=True) for p, t in speech_sites((*b, "ask"), step.ask)]
            for path, text in reprompt_sites(b, step):
                sites.append(Site(path, text, False, prompt=True))
        elif isinstance(step, BranchStep):
            for i, cond in enumerate(step.branch):
                sites.append(Site((*b, "branch", i, "if"), cond.if_, True))
        elif isinstance(step, SetStep):
            sites.extend(value_sites((*b, "set"), step.set))
        elif isinstance(step, WebhookStep):
            sites.append(Site((*b, "webhook", "url"), step.webhook.url, False, env_ok=True, exposed="url"))
            for key, text in step.webhook.headers.items():
                sites.append(Site((*b, "webhook", "headers", key), text, False, env_ok=True))
            sites.extend(value_sites((*b, "webhook", "json"), step.webhook.json_body))
            if step.filler:
                sites += [
                    Site(p, t, False, prompt=True) for p, t in speech_sites((*b, "filler"), step.filler)
                ]
        elif isinstance(step, TransferStep):
            t = step.transfer
            for key in ("endpoint", "context", "extension", "caller_id"):
                text = getattr(t, key)
                if text is not None and is_template(text):
                    sites.append(Site((*b, "transfer", key), text, False, exposed="channel"))
            for key, text in t.variables.items():
                sites.append(Site((*b, "transfer", "variables", key), text, False, exposed="channel"))
        elif isinstance(step, SubflowStep):
            sites.extend(value_sites((*b, "with"), step.with_))
        elif isinstance(step, ReturnStep) and step.return_:
            sites.extend(value_sites((*b, "return"), step.return_))
    return sites
