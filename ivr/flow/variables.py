"""Which variables a flow sets, and which of them hold sensitive values: the engine redacts those, the
validator checks nothing speaks or leaks them."""

from __future__ import annotations

from ivr.flow.errors import KeyPath
from ivr.flow.model import AskStep, Flow, RecordStep, SetStep, SubflowStep, WebhookStep
from ivr.flow.sites import value_sites
from ivr.flow.templates import TemplateError, parse_source, referenced_names


def assigned_variables(flow: Flow) -> dict[str, KeyPath]:
    """Every variable the flow can set, with where it is first set."""
    out: dict[str, KeyPath] = {name: ("vars", name) for name in flow.vars}
    for name, step in flow.steps.items():
        b: KeyPath = ("steps", name)
        if isinstance(step, SetStep):
            for key in step.set:
                out.setdefault(key, (*b, "set", key))
        elif isinstance(step, AskStep):
            if step.capture is not None:
                out.setdefault(step.capture.slot, (*b, "capture", "slot"))
            if step.save is not None:
                out.setdefault(step.save, (*b, "save"))
        elif isinstance(step, WebhookStep | SubflowStep | RecordStep) and step.save is not None:
            out.setdefault(step.save, (*b, "save"))
    return out


def sensitive_variables(flow: Flow) -> set[str]:
    """Sensitive capture slots plus variables ``set`` from them (taint follows copies)."""
    tainted = {
        s.capture.slot
        for s in flow.steps.values()
        if isinstance(s, AskStep) and s.capture and s.capture.sensitive
    }
    changed = True
    while changed:
        changed = False
        for step in flow.steps.values():
            if not isinstance(step, SetStep):
                continue
            for key, value in step.set.items():
                if key in tainted:
                    continue
                for site in value_sites((), value):
                    try:
                        names = referenced_names(parse_source(site.source, expression=site.expression))
                    except TemplateError:
                        continue
                    if names & tainted:
                        tainted.add(key)
                        changed = True
    return tainted
