"""Checks that depend on how a flow will be served (``ivr validate --mode``, ``ivr run --no-ari``)."""

from __future__ import annotations

from pathlib import Path

from ivr.flow.errors import FlowIssue
from ivr.flow.model import Flow, TransferStep


def dialplan_mode_issues(path: Path, flow: Flow) -> list[FlowIssue]:
    """Transfers need ARI: in dialplan-only mode they always take their failure branch."""
    lines = path.read_text(encoding="utf-8").splitlines()
    issues = []
    for name, step in flow.steps.items():
        if isinstance(step, TransferStep):
            line = next((i for i, text in enumerate(lines, 1) if text.strip() == f"{name}:"), 1)
            column = len(lines[line - 1]) - len(lines[line - 1].lstrip()) + 1 if lines else 1
            issues.append(
                FlowIssue(
                    "error",
                    str(path),
                    line,
                    column,
                    ("steps", name, "transfer"),
                    "transfers are not possible in dialplan-only mode (ivr run --no-ari): no ARI channel to move",
                    hint="run this flow in ARI mode, or replace the transfer with a message and a hangup",
                )
            )
    return issues
