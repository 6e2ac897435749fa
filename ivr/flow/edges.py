"""The transitions of a flow, as one list shared by the validator (targets, reachability, ways out)
and the diagram renderer, so the picture and the checks can never disagree."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ivr.flow.errors import KeyPath
from ivr.flow.model import (
    AskStep,
    BranchStep,
    Flow,
    GotoStep,
    LanguageStep,
    PlayStep,
    RecordStep,
    SayStep,
    SetStep,
    SubflowStep,
    TransferStep,
    WebhookStep,
)

EdgeKind = Literal["next", "choice", "branch", "no_input", "no_match", "error", "intent"]
HANGUP = "(hangup)"
"""Pseudo-target used when an error path has no step to go to: the engine hangs up."""


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    kind: EdgeKind
    label: str
    path: KeyPath
    implicit: bool = False


def _error_target(flow: Flow, explicit: str | None) -> tuple[str, bool]:
    if explicit is not None:
        return explicit, False
    return (flow.on_error, True) if flow.on_error is not None else (HANGUP, True)


def step_edges(flow: Flow, name: str) -> list[Edge]:
    """Outgoing edges of one step (implicit ones, like defaults to ``on_error``, are flagged)."""
    step = flow.steps[name]
    base: KeyPath = ("steps", name)
    out: list[Edge] = []
    if isinstance(step, SayStep | PlayStep | SetStep | SubflowStep):
        out.append(Edge(name, step.next, "next", "", (*base, "next")))
    elif isinstance(step, LanguageStep):
        out.append(Edge(name, step.next, "next", step.language, (*base, "next")))
    elif isinstance(step, RecordStep):
        out.append(Edge(name, step.next, "next", "recorded", (*base, "next")))
        target, implicit = _error_target(flow, step.on_error)
        out.append(Edge(name, target, "error", "error", (*base, "on_error"), implicit))
    elif isinstance(step, GotoStep):
        out.append(Edge(name, step.goto, "next", "goto", (*base, "goto")))
    elif isinstance(step, BranchStep):
        for i, cond in enumerate(step.branch):
            out.append(Edge(name, cond.next, "branch", cond.if_, (*base, "branch", i, "next")))
        out.append(Edge(name, step.else_, "branch", "else", (*base, "else")))
    elif isinstance(step, WebhookStep):
        out.append(Edge(name, step.next, "next", "ok", (*base, "next")))
        target, implicit = _error_target(flow, step.on_error)
        out.append(Edge(name, target, "error", "error", (*base, "on_error"), implicit))
    elif isinstance(step, TransferStep):
        target, implicit = _error_target(flow, step.on_failure)
        out.append(Edge(name, target, "error", "failed", (*base, "on_failure"), implicit))
    elif isinstance(step, AskStep):
        if step.choices is not None:
            for cname, choice in step.choices.items():
                label = cname + (f" [{choice.dtmf}]" if choice.dtmf else "")
                out.append(Edge(name, choice.next, "choice", label, (*base, "choices", cname, "next")))
        elif step.confirm is not None:
            out.append(Edge(name, step.confirm.yes, "choice", "yes", (*base, "confirm", "yes")))
            out.append(Edge(name, step.confirm.no, "choice", "no", (*base, "confirm", "no")))
        elif step.options is not None and step.next is not None:
            out.append(Edge(name, step.next, "choice", f"option [1-{step.options.max}]", (*base, "next")))
            out.append(Edge(name, step.options.empty, "branch", "no options", (*base, "options", "empty")))
        elif step.next is not None:
            out.append(
                Edge(name, step.next, "next", step.capture.slot if step.capture else "", (*base, "next"))
            )
        for kind, handler in (("no_input", step.no_input), ("no_match", step.no_match)):
            target, implicit = _error_target(flow, handler.next if handler else None)
            out.append(Edge(name, target, kind, kind, (*base, kind, "next"), implicit))  # type: ignore[arg-type]
        if step.global_intents:
            for iname, intent in flow.intents.items():
                if intent.next is not None:
                    out.append(Edge(name, intent.next, "intent", iname, ("intents", iname, "next"), True))
    return out


def all_edges(flow: Flow) -> list[Edge]:
    return [edge for name in flow.steps for edge in step_edges(flow, name)]
