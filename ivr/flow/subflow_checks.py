"""Pass 3 of validation, the subflow part: subflows that are missing, call back into their caller
(a cycle), or are given ``with`` variables they do not declare.

Kept apart from :mod:`ivr.flow.checks` because these checks read other flow files from the flows
directory, where every other pass-3 check looks at the one flow alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ivr.flow.errors import FlowIssue, KeyPath, did_you_mean
from ivr.flow.model import Flow, SubflowStep
from ivr.flow.source import SourceMap, find_flow_file, parse_yaml, read_flow_text


def _subflow_names(data: Any) -> set[str]:
    steps = data.get("steps") if isinstance(data, dict) else None
    if not isinstance(steps, dict):
        return set()
    return {str(s["subflow"]) for s in steps.values() if isinstance(s, dict) and "subflow" in s}


def _reaches(flows_dir: Path, start: str, target: str) -> list[str] | None:
    """The chain of subflow calls from ``start`` back to ``target`` (a cycle), if any."""
    todo: list[list[str]] = [[start]]
    seen: set[str] = set()
    while todo:
        chain = todo.pop()
        if chain[-1] == target:
            return chain
        if chain[-1] in seen:
            continue
        seen.add(chain[-1])
        file = find_flow_file(flows_dir, chain[-1])
        if file is None:
            continue
        text, _ = read_flow_text(file)
        data = parse_yaml(text, str(file))[0] if text is not None else None
        todo.extend([*chain, nxt] for nxt in sorted(_subflow_names(data)))
    return None


def _check_subflows(flow: Flow, smap: SourceMap, flows_dir: Path | None) -> list[FlowIssue]:
    out: list[FlowIssue] = []
    if flows_dir is None:
        return out
    own = Path(smap.file).stem
    for name, step in flow.steps.items():
        if not isinstance(step, SubflowStep):
            continue
        path: KeyPath = ("steps", name, "subflow")
        cycle = _reaches(flows_dir, step.subflow, own)
        if cycle is not None:
            out.append(
                smap.issue(
                    path,
                    f"subflow cycle: {' -> '.join([own, *cycle])}",
                    hint="a subflow may not call back into a flow that is running it",
                )
            )
            continue
        file = find_flow_file(flows_dir, step.subflow)
        if file is None:
            known = [p.stem for p in flows_dir.glob("*.y*ml")]
            out.append(
                smap.issue(
                    path,
                    f"subflow '{step.subflow}' not found in {flows_dir}",
                    expected=f"a file {step.subflow}.yaml",
                    hint=did_you_mean(step.subflow, known),
                )
            )
            continue
        text, _ = read_flow_text(file)
        if text is None:
            continue  # loading the subflow reports why
        data, _, issues = parse_yaml(text, str(file))
        if issues or not isinstance(data, dict):
            continue
        try:
            sub = Flow.model_validate(data)
        except ValidationError:
            continue
        for key in step.with_:
            if key not in sub.vars:
                out.append(
                    smap.issue(
                        ("steps", name, "with", key),
                        f"subflow '{step.subflow}' has no variable '{key}'",
                        expected=f"one of its vars: {', '.join(sub.vars) or '(none)'}",
                        hint=did_you_mean(key, sub.vars),
                    )
                )
    return out
