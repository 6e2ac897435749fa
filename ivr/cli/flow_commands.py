"""``ivr validate``, ``ivr graph`` and ``ivr schema``: the flow author's tools."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ivr.flow.errors import FlowIssue
from ivr.flow.graph import to_dot, to_mermaid
from ivr.flow.model import Flow, TransferStep
from ivr.flow.schema import flow_json_schema_text
from ivr.flow.validate import FLOW_SUFFIXES, validate_file


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    validate = subparsers.add_parser(
        "validate", help="check flow files", description="Check flow files; exit 1 if any has errors."
    )
    validate.add_argument(
        "files",
        nargs="+",
        type=Path,
        metavar="FILE",
        help="flow files, or directories whose *.yaml files are checked",
    )
    validate.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    validate.add_argument(
        "--mode",
        choices=("ari", "dialplan"),
        default="ari",
        help="how the flow will run: 'dialplan' (ivr run --no-ari) cannot transfer calls",
    )
    validate.set_defaults(func=cmd_validate)

    graph = subparsers.add_parser(
        "graph",
        help="print a flow as a diagram",
        description="Print a flow as a Mermaid (default) or Graphviz DOT diagram.",
    )
    graph.add_argument("file", type=Path, metavar="FILE")
    graph.add_argument("--format", choices=("mermaid", "dot"), default="mermaid")
    graph.set_defaults(func=cmd_graph)

    schema = subparsers.add_parser(
        "schema",
        help="print the flow JSON Schema",
        description="Print the JSON Schema of flow files (for YAML editors).",
    )
    schema.set_defaults(func=cmd_schema)


def cmd_validate(args: argparse.Namespace) -> int:
    failed = 0
    files: list[Path] = []
    for given in args.files:
        files += (
            sorted(p for p in given.iterdir() if p.suffix in FLOW_SUFFIXES) if given.is_dir() else [given]
        )
    for path in files:
        report = validate_file(path)
        if args.mode == "dialplan" and report.flow is not None:
            report.issues.extend(dialplan_mode_issues(path, report.flow))
        for issue in report.issues:
            if issue.is_error or not args.quiet:
                print(issue, file=sys.stderr if issue.is_error else sys.stdout)
        if report.ok and report.flow is not None:
            if not args.quiet:
                warn = f", {len(report.warnings)} warning(s)" if report.warnings else ""
                print(f"{path}: ok ({len(report.flow.steps)} steps{warn})")
        else:
            failed += 1
            print(f"{path}: {len(report.errors)} error(s)", file=sys.stderr)
    return 1 if failed else 0


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


def cmd_graph(args: argparse.Namespace) -> int:
    report = validate_file(args.file)
    if report.flow is None:
        for issue in report.errors:
            print(issue, file=sys.stderr)
        return 1
    print(to_dot(report.flow) if args.format == "dot" else to_mermaid(report.flow), end="")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    print(flow_json_schema_text(), end="")
    return 0
