"""Validation of the turn-taking keys that the schema cannot check alone.

A question's ``end_of_turn`` keys are merged over the flow's ``settings.end_of_turn`` when the question is
asked; the merged pair must still be in order (``min_silence_ms`` <= ``max_silence_ms``), and saying so at
``ivr validate`` time, at the step's own key, beats a failure in the middle of a call.
"""

from __future__ import annotations

from ivr.flow.errors import FlowIssue
from ivr.flow.model import AskStep, Flow
from ivr.flow.source import SourceMap


def turn_checks(flow: Flow, smap: SourceMap) -> list[FlowIssue]:
    out: list[FlowIssue] = []
    base = flow.settings.end_of_turn
    for name, step in flow.steps.items():
        if not isinstance(step, AskStep) or step.end_of_turn is None:
            continue
        own = step.end_of_turn
        lo = own.min_silence_ms if own.min_silence_ms is not None else base.min_silence_ms
        hi = own.max_silence_ms if own.max_silence_ms is not None else base.max_silence_ms
        if lo > hi:
            key = "min_silence_ms" if own.min_silence_ms is not None else "max_silence_ms"
            out.append(
                smap.issue(
                    ("steps", name, "end_of_turn", key),
                    f"end_of_turn.min_silence_ms ({lo}) is longer than end_of_turn.max_silence_ms ({hi})",
                    expected="min_silence_ms <= max_silence_ms (the step's keys over settings.end_of_turn)",
                )
            )
    return out
