"""``ivr validate`` for caller scripts (``*.caller.yaml``): every finding at its file, line and column.

Checks the script against its schema (:class:`ivr.simulation.script.CallerScript`, also written out as
``flows/callers/schema.json``) and, when the flow it plays against is found (its ``flow:`` key, else the
file name's first part: ``bank.happy.caller.yaml`` plays ``bank.yaml`` in the directory above or beside
it), against the flow: steps named by ``expect_step``/``expect_barge_in`` exist, ``expect_var`` names a
variable the flow has, and every ``env.X`` the flow's webhooks use is given in ``env:`` (``ivr test``
sees only the process environment and ``env:``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ivr.flow.errors import FlowIssue, KeyPath, did_you_mean
from ivr.flow.model import Flow, WebhookStep
from ivr.flow.source import SourceMap, find_flow_file, parse_yaml
from ivr.flow.templates import attribute_uses, parse_source
from ivr.simulation import script as sc

SCRIPT_SUFFIXES = (".caller.yaml", ".caller.yml")
TOP_KEYS = tuple((info.alias or name) for name, info in sc.CallerScript.model_fields.items())


def is_caller_script(path: Path) -> bool:
    return path.name.endswith(SCRIPT_SUFFIXES)


def caller_json_schema() -> dict[str, Any]:
    schema = sc.CallerScript.model_json_schema(by_alias=True, mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema, "title": "ivr caller script"}


def caller_json_schema_text() -> str:
    return json.dumps(caller_json_schema(), indent=2) + "\n"


def _model_issues(exc: ValidationError, base: KeyPath, smap: SourceMap) -> list[FlowIssue]:
    out = []
    for err in exc.errors():
        loc = [
            p
            for p in err["loc"]
            if not (isinstance(p, str) and p.startswith(("function-", "list[", "dict[")))
        ]
        path: KeyPath = (*base, *loc)
        message = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = f"unknown key '{loc[-1]}'"
        elif err["type"] == "missing":
            message = f"missing required key '{loc[-1]}'"
        out.append(smap.issue(path, message, at_key=err["type"] == "extra_forbidden"))
    return out


def _step_issues(steps: Any, smap: SourceMap) -> list[FlowIssue]:
    if steps is None:
        return []
    if not isinstance(steps, list):
        return [smap.issue(("steps",), "'steps' must be a list", expected="- wait_for: ..., - say: ...")]
    out: list[FlowIssue] = []
    known = sorted(sc.STEP_MODELS)
    for i, step in enumerate(steps):
        path: KeyPath = ("steps", i)
        if not isinstance(step, dict):
            out.append(smap.issue(path, f"a script step is a mapping such as 'say: hello', got {step!r}"))
            continue
        keys = [k for k in step if k in sc.STEP_MODELS]
        if len(keys) != 1:
            others = [k for k in step if k not in sc.STEP_MODELS and k != "timeout_s"]
            hint = did_you_mean(str(others[0]), known) if others else None
            what = f"several step keys ({', '.join(keys)})" if keys else "no step key"
            out.append(
                smap.issue(
                    path if not others else (*path, others[0]),
                    f"step {i + 1} has {what}",
                    expected=f"one of {', '.join(known)}",
                    hint=hint,
                    at_key=bool(others),
                )
            )
            continue
        try:
            sc.STEP_MODELS[keys[0]].model_validate(step)
        except ValidationError as exc:
            out += _model_issues(exc, path, smap)
    return out


def _flow_for(path: Path, script: sc.CallerScript) -> Path | None:
    name = script.flow or path.name.split(".")[0]
    for directory in (path.parent, path.parent.parent):
        found = find_flow_file(directory, name)
        if found is not None and not is_caller_script(found):
            return found
    return None


def _against_flow(script: sc.CallerScript, flow: Flow, flow_file: Path, smap: SourceMap) -> list[FlowIssue]:
    from ivr.flow.variables import assigned_variables

    out: list[FlowIssue] = []
    steps = set(flow.steps)
    variables = set(assigned_variables(flow))
    for i, step in enumerate(script.steps):
        path: KeyPath = ("steps", i)
        named = step.expect_step if isinstance(step, sc.ExpectStep) else None
        if isinstance(step, sc.ExpectBargeIn):
            named = step.expect_barge_in
        if named is not None and named.split(":")[-1] not in steps and ":" not in named:
            out.append(
                smap.issue(
                    (*path, "expect_step" if isinstance(step, sc.ExpectStep) else "expect_barge_in"),
                    f"flow {flow_file.stem} has no step '{named}'",
                    hint=did_you_mean(named, steps),
                )
            )
        if isinstance(step, sc.ExpectVar):
            for var in step.expect_var:
                if var not in variables:
                    out.append(
                        smap.issue(
                            (*path, "expect_var", var),
                            f"flow {flow_file.stem} has no variable '{var}'",
                            hint=did_you_mean(var, variables),
                        )
                    )
    needed: set[str] = set()
    for fstep in flow.steps.values():
        if isinstance(fstep, WebhookStep):
            for text in (fstep.webhook.url, *fstep.webhook.headers.values()):
                needed |= attribute_uses(parse_source(text), "env") - {"*"}
    if not script.webhooks:
        return out  # the script expects no web requests: whether the flow reaches one is its business
    where: KeyPath = ("env",) if ("env",) in smap.keys else ("webhooks",)
    for name in sorted(needed - set(script.env)):
        out.append(
            smap.issue(
                where,
                f"flow {flow_file.stem}'s webhooks use env.{name}, which this script does not set",
                severity="warning",
                hint=f"add env: {{{name}: test-value}} (ivr test sees only the process environment and env:)",
            )
        )
    return out


def validate_script_source(text: str, file: str, *, path: Path | None = None) -> list[FlowIssue]:
    """Findings for one caller script (``path`` locates its flow for the cross-checks)."""
    data, smap, issues = parse_yaml(text, file)
    if issues or data is None:
        return issues or [smap.issue((), "the script is empty", expected="a mapping with steps")]
    if not isinstance(data, dict):
        return [smap.issue((), "a caller script is a mapping", expected=f"keys {', '.join(TOP_KEYS)}")]
    out: list[FlowIssue] = []
    for key in data:
        if key not in TOP_KEYS:
            out.append(
                smap.issue(
                    (key,),
                    f"unknown key '{key}' in a caller script",
                    expected=f"one of {', '.join(TOP_KEYS)}",
                    hint=did_you_mean(str(key), TOP_KEYS),
                    at_key=True,
                )
            )
    out += _step_issues(data.get("steps"), smap)
    if out:
        return out
    try:
        raw = yaml.load(text, Loader=sc._ScriptLoader)
        script = sc.CallerScript.model_validate(raw)
    except ValidationError as exc:
        return _model_issues(exc, (), smap)
    if path is not None:
        flow_file = _flow_for(path, script)
        if flow_file is None:
            out.append(
                smap.issue(
                    ("flow",) if script.flow else (),
                    f"no flow '{script.flow or path.name.split('.')[0]}' beside or above this script",
                    severity="warning",
                    hint="name it with flow: NAME, or call the script NAME.case.caller.yaml",
                )
            )
        else:
            from ivr.flow.validate import validate_file

            report = validate_file(flow_file)
            if report.flow is not None:
                out += _against_flow(script, report.flow, flow_file, smap)
    return out


def validate_script_file(path: Path) -> list[FlowIssue]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return [FlowIssue("error", str(path), 1, 1, (), f"cannot read: {exc}")]
    issues = validate_script_source(text, str(path), path=path)
    return sorted(issues, key=lambda i: (i.line, i.column))
