"""Pass 3 of validation: checks on a schema-valid flow that the schema cannot express.

Targets that don't exist, unreachable steps (warning), steps with no way out, template syntax and
variables nobody sets, built-in names, secrets outside webhook url/headers, sensitive values where they
could be spoken or leak, DTMF keys used twice in one question. ``check_flow`` runs them all, with the
subflow checks of :mod:`ivr.flow.subflow_checks` (missing, cycles, ``with``).
"""

from __future__ import annotations

import re
from pathlib import Path

from ivr.flow.builtins import BUILTIN_ROOTS, CALL_FIELDS, LAST_FIELDS, RESERVED_NAMES
from ivr.flow.edges import HANGUP, all_edges
from ivr.flow.errors import FlowIssue, KeyPath, did_you_mean
from ivr.flow.feature_checks import feature_checks
from ivr.flow.model import (
    AskStep,
    Flow,
    HangupStep,
    ReturnStep,
    TransferStep,
    _StepBase,
)
from ivr.flow.sites import template_sites
from ivr.flow.source import SourceMap
from ivr.flow.subflow_checks import _check_subflows
from ivr.flow.template_checks import static_findings
from ivr.flow.templates import (
    SANDBOX,
    TemplateError,
    attribute_uses,
    parse_source,
    referenced_names,
)
from ivr.flow.turn_checks import turn_checks
from ivr.flow.variables import assigned_variables, sensitive_variables

FLOW_SUFFIXES = (".yaml", ".yml")
KIND_MODELS: dict[str, type[_StepBase]] = {cls.kind: cls for cls in _StepBase.__subclasses__()}
_OCTAL = re.compile(r"^[-+]?0[0-7_]+$")
_SEXAGESIMAL = re.compile(r"^[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?$")
_DTMF_PATTERN = r"^[0-9*#A-D]$"


def _check_templates(flow: Flow, smap: SourceMap) -> list[FlowIssue]:
    out: list[FlowIssue] = []
    known = set(assigned_variables(flow)) | RESERVED_NAMES | set(SANDBOX.globals)
    sensitive = sensitive_variables(flow)
    for site in template_sites(flow):
        try:
            tree = parse_source(site.source, expression=site.expression)
        except TemplateError as exc:
            out.append(
                smap.issue(
                    site.path,
                    str(exc),
                    expected="a valid "
                    + (
                        "expression such as 'balance > 100'"
                        if site.expression
                        else "template such as 'Hi {{ name }}'"
                    ),
                )
            )
            continue
        for finding in static_findings(tree):
            out.append(smap.issue(site.path, finding))
        names = referenced_names(tree)
        for name in sorted(names):
            if name == "env":
                if not site.env_ok:
                    out.append(
                        smap.issue(
                            site.path,
                            "secrets (env.X) may only be used in a webhook's url and headers",
                            hint="a prompt, body or variable could speak or leak it",
                        )
                    )
                elif "*" in attribute_uses(tree, "env") or not attribute_uses(tree, "env"):
                    out.append(smap.issue(site.path, "use env with a fixed name, e.g. env.API_TOKEN"))
            elif name not in known:
                out.append(
                    smap.issue(
                        site.path,
                        f"uses variable '{name}' that nothing sets",
                        expected="a variable from vars, set, capture.slot, save, or a built-in "
                        f"({', '.join(sorted(BUILTIN_ROOTS))})",
                        hint=did_you_mean(name, known - set(SANDBOX.globals)),
                    )
                )
        for root, fields in (("call", CALL_FIELDS), ("last", LAST_FIELDS)):
            for attr in sorted(attribute_uses(tree, root) - set(fields) - {"*"}):
                out.append(
                    smap.issue(
                        site.path,
                        f"'{root}.{attr}' is not a built-in variable",
                        expected=f"one of {', '.join(f'{root}.{f}' for f in fields)}",
                        hint=did_you_mean(attr, fields),
                    )
                )
        leaked = sorted(names & sensitive)
        if leaked and site.prompt:
            out.append(
                smap.issue(
                    site.path,
                    f"this prompt could speak the sensitive value '{leaked[0]}'",
                    hint="sensitive captures are never spoken, logged or recorded",
                )
            )
        elif leaked and site.exposed == "channel":
            out.append(
                smap.issue(
                    site.path,
                    f"this transfer would copy the sensitive value '{leaked[0]}' into "
                    "the channel, where Asterisk logs and CDRs can show it",
                )
            )
        elif leaked and site.exposed == "url":
            out.append(
                smap.issue(
                    site.path,
                    f"the sensitive value '{leaked[0]}' in a URL can end up in server and proxy logs",
                    severity="warning",
                    hint="send it in the json body instead",
                )
            )
    return out


def _check_dtmf(flow: Flow, smap: SourceMap) -> list[FlowIssue]:
    out: list[FlowIssue] = []
    global_keys: dict[str, tuple[str, KeyPath]] = {}
    for iname, intent in flow.intents.items():
        if intent.dtmf is None:
            continue
        path: KeyPath = ("intents", iname, "dtmf")
        if intent.dtmf in global_keys:
            out.append(
                smap.issue(
                    path,
                    f"DTMF key '{intent.dtmf}' is used twice: by global intents "
                    f"'{global_keys[intent.dtmf][0]}' and '{iname}'",
                )
            )
        global_keys[intent.dtmf] = (f"global intent '{iname}'", path)
    for name, step in flow.steps.items():
        if not isinstance(step, AskStep):
            continue
        b: KeyPath = ("steps", name)
        keys: list[tuple[str, str, KeyPath]] = []
        if step.choices:
            keys += [
                (c.dtmf, f"choice '{cn}'", (*b, "choices", cn, "dtmf"))
                for cn, c in step.choices.items()
                if c.dtmf
            ]
            if step.input == "dtmf":
                for cn, c in step.choices.items():
                    if c.dtmf is None:
                        out.append(
                            smap.issue(
                                (*b, "choices", cn),
                                f"choice '{cn}' has no dtmf key but the "
                                "question only listens for DTMF (input: dtmf)",
                            )
                        )
        elif step.capture is not None and step.capture.type == "enum" and step.capture.values:
            keys += [
                (v.dtmf, f"value '{vn}'", (*b, "capture", "values", vn, "dtmf"))
                for vn, v in step.capture.values.items()
                if v.dtmf
            ]
        elif step.confirm is not None or (step.capture is not None and step.capture.type == "yes_no"):
            keys += [("1", "yes (key 1)", (*b, "ask")), ("2", "no (key 2)", (*b, "ask"))]
        digits_capture = step.capture is not None and step.capture.type in ("digits", "number")
        owners: dict[str, str] = {}
        if step.global_intents and not digits_capture:
            owners = {k: v[0] for k, v in global_keys.items()}
        for key, owner, path in keys:
            if key in owners:
                out.append(
                    smap.issue(
                        path,
                        f"DTMF key '{key}' is used twice in step '{name}': by {owners[key]} and {owner}",
                        hint="pick another key, or set global_intents: false",
                    )
                )
            owners[key] = owner
    return out


def _check_graph(flow: Flow, smap: SourceMap) -> list[FlowIssue]:
    out: list[FlowIssue] = []
    steps = set(flow.steps)
    if flow.start not in steps:
        out.append(
            smap.issue(
                ("start",),
                f"start step '{flow.start}' does not exist",
                expected=f"one of {', '.join(sorted(steps))}",
                hint=did_you_mean(flow.start, steps),
            )
        )
    if flow.on_error is not None and flow.on_error not in steps:
        out.append(
            smap.issue(
                ("on_error",),
                f"on_error step '{flow.on_error}' does not exist",
                hint=did_you_mean(flow.on_error, steps),
            )
        )
    for iname, intent in flow.intents.items():
        if intent.next is not None and intent.next not in steps:
            out.append(
                smap.issue(
                    ("intents", iname, "next"),
                    f"target step '{intent.next}' does not exist",
                    hint=did_you_mean(intent.next, steps),
                )
            )
    edges = all_edges(flow)
    for edge in edges:
        if not edge.implicit and edge.target != HANGUP and edge.target not in steps:
            out.append(
                smap.issue(
                    edge.path,
                    f"target step '{edge.target}' does not exist",
                    expected=f"one of {', '.join(sorted(steps))}",
                    hint=did_you_mean(edge.target, steps),
                )
            )
    succ: dict[str, set[str]] = {s: set() for s in steps}
    for edge in edges:
        succ[edge.source].add(edge.target)
    # reachability
    roots = [r for r in (flow.start, flow.on_error) if r in steps]
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        cur = todo.pop()
        if cur in seen or cur not in steps:
            continue
        seen.add(cur)
        todo.extend(succ[cur])
    if flow.start in steps:
        for name in flow.steps:
            if name not in seen:
                out.append(
                    smap.issue(
                        ("steps", name),
                        f"step '{name}' can never be reached",
                        severity="warning",
                        at_key=True,
                        hint="no next, choice, branch or handler leads to it",
                    )
                )
    # ways out: a path to hangup, transfer, return or an implicit hang-up
    # (walked backwards from the exits, so it takes one pass however long the chains of steps are)
    preds: dict[str, set[str]] = {s: set() for s in steps}
    good = {n for n, s in flow.steps.items() if isinstance(s, HangupStep | TransferStep | ReturnStep)}
    for name, targets in succ.items():
        if any(t == HANGUP or t not in steps for t in targets):
            good.add(name)
        for t in targets:
            if t in preds:
                preds[t].add(name)
    todo = list(good)
    while todo:
        for before in preds[todo.pop()] - good:
            good.add(before)
            todo.append(before)
    for name in sorted(steps - good):
        out.append(
            smap.issue(
                ("steps", name),
                f"step '{name}' has no way out: no path from it reaches a hangup, transfer or return step",
                at_key=True,
                hint="the call would loop forever; add a branch or handler that leaves the loop",
            )
        )
    return out


def _check_names(flow: Flow, smap: SourceMap) -> list[FlowIssue]:
    out = []
    for var, path in assigned_variables(flow).items():
        if var in RESERVED_NAMES:
            out.append(smap.issue(path, f"'{var}' is a built-in name and cannot be used as a variable"))
    return out


def check_flow(flow: Flow, smap: SourceMap, flows_dir: Path | None = None) -> list[FlowIssue]:
    """Pass 3 on a schema-valid flow."""
    return [
        *_check_names(flow, smap),
        *_check_graph(flow, smap),
        *_check_templates(flow, smap),
        *_check_dtmf(flow, smap),
        *_check_subflows(flow, smap, flows_dir),
        *feature_checks(flow, smap, flows_dir),
        *turn_checks(flow, smap),
    ]
