"""Flow validation that tells the author exactly what is wrong and where.

Three passes over one file: (1) YAML with node marks (syntax, duplicate keys, number traps such as
``0100`` or ``10:30``), (2) the pydantic schema, with unknown keys rejected with a "did you mean" hint and
with YAML traps (``yes``/``no``/``on``/``off`` read as booleans, ``#`` read as a comment) explained,
(3) flow checks: missing start, targets that don't exist, unreachable steps (warning), steps with no way
out, template syntax, variables nobody sets, secrets outside webhook url/headers, sensitive values in
prompts, DTMF keys used twice in one question, and subflows that don't exist. Passes 1-2 live in
:mod:`ivr.flow.source` and :mod:`ivr.flow.schema_errors`, pass 3 in :mod:`ivr.flow.checks`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from ivr.flow.checks import check_flow
from ivr.flow.errors import FlowIssue, KeyPath, did_you_mean
from ivr.flow.model import Flow
from ivr.flow.schema_errors import check_keys, describe, scalar_traps, schema_issues
from ivr.flow.source import FLOW_SUFFIXES, MAX_STEPS, find_flow_file, parse_yaml, read_flow_text
from ivr.flow.variables import assigned_variables, sensitive_variables

__all__ = [
    "FLOW_SUFFIXES",
    "ValidationReport",
    "assigned_variables",
    "check_flow",
    "did_you_mean",
    "find_flow_file",
    "sensitive_variables",
    "validate_file",
    "validate_source",
]


@dataclass
class ValidationReport:
    """Result of validating one file: the parsed flow (None if it has errors) and all findings."""

    file: str
    flow: Flow | None
    issues: list[FlowIssue] = field(default_factory=list)

    @property
    def errors(self) -> list[FlowIssue]:
        return [i for i in self.issues if i.is_error]

    @property
    def warnings(self) -> list[FlowIssue]:
        return [i for i in self.issues if not i.is_error]

    @property
    def ok(self) -> bool:
        return not self.errors


def validate_source(text: str, file: str, *, flows_dir: Path | None = None) -> ValidationReport:
    """Validate flow text; ``flows_dir`` is where its subflows live (checked when given)."""
    report = _validate(text, file, flows_dir)
    report.issues.sort(key=lambda i: (i.line, i.column, i.severity))
    return report


def _validate(text: str, file: str, flows_dir: Path | None) -> ValidationReport:
    data, smap, issues = parse_yaml(text, file)
    report = ValidationReport(file, None, list(issues))
    if data is None:
        if not report.issues:
            report.issues.append(
                smap.issue(
                    (), "the file holds no flow (an empty document)", expected="keys name, start, steps ..."
                )
            )
        return report
    if not isinstance(data, dict):
        report.issues.append(
            smap.issue(
                (),
                f"a flow file must be a mapping, got {describe(data)}",
                expected="keys name, start, steps ...",
            )
        )
        return report
    steps = data.get("steps")
    if isinstance(steps, dict) and len(steps) > MAX_STEPS:
        report.issues.append(
            smap.issue(
                ("steps",),
                f"{len(steps):,} steps; the limit is {MAX_STEPS:,} steps per flow file",
                hint="split the flow into subflows",
                at_key=True,
            )
        )
        return report
    report.issues += scalar_traps(data, smap)
    key_issues: list[FlowIssue] = []
    check_keys(data, Flow, (), smap, key_issues)
    report.issues += key_issues
    try:
        flow = Flow.model_validate(data)
    except ValidationError as exc:
        step_paths: set[KeyPath] = {i.path for i in key_issues if len(i.path) == 2 and i.path[0] == "steps"}
        suggested: set[KeyPath] = set()
        for issue in key_issues:
            hinted = re.match(r"did you mean '(\w+)'", issue.hint or "")
            if hinted:
                suggested.add((*issue.path[:-1], hinted.group(1)))
        report.issues += schema_issues(exc, data, smap, step_paths, suggested)
        if not report.errors:  # pragma: no cover - pydantic only failed on keys already reported
            report.issues.append(smap.issue((), "the flow does not match the schema"))
        return report
    if report.errors:
        return report
    report.issues += check_flow(flow, smap, flows_dir)
    if report.ok:
        report.flow = flow
    return report


def validate_file(path: Path) -> ValidationReport:
    """Validate one flow file: read within the limits of :mod:`ivr.flow.source`, then every pass."""
    text, problem = read_flow_text(path)
    if text is None:
        assert problem is not None
        return ValidationReport(str(path), None, [problem])
    return validate_source(text, str(path), flows_dir=path.parent)
