"""``ivr validate``, ``ivr graph`` and ``ivr schema``: the flow author's tools.

``ivr validate`` checks flows and caller scripts (``*.caller.yaml``, recognised by name); for flows it
also says when a language the flow speaks has no installed offline model but its engine is ``offline``
(named in the flow, or the process default ``IVR_STT``/``IVR_TTS``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ivr.flow.errors import FlowIssue
from ivr.flow.feature_checks import offline_language_issues
from ivr.flow.graph import to_dot, to_mermaid
from ivr.flow.model import Flow
from ivr.flow.modes import dialplan_mode_issues
from ivr.flow.schema import flow_json_schema_text
from ivr.flow.source import parse_yaml
from ivr.flow.validate import FLOW_SUFFIXES, validate_file
from ivr.simulation.script_check import caller_json_schema_text, is_caller_script, validate_script_file
from ivr.speech.errors import ProviderError


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    validate = subparsers.add_parser(
        "validate", help="check flow files", description="Check flow files; exit 1 if any has errors."
    )
    validate.add_argument(
        "files",
        nargs="+",
        type=Path,
        metavar="FILE",
        help="flow files or caller scripts (*.caller.yaml), or directories whose *.yaml files are checked",
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
        description="Print the JSON Schema of flow files (for YAML editors), or of caller scripts.",
    )
    schema.add_argument(
        "--caller",
        action="store_true",
        help="the schema of caller scripts (*.caller.yaml) instead (a copy is flows/callers/schema.json)",
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
        if is_caller_script(path):
            failed += _report_script(path, quiet=args.quiet)
            continue
        report = validate_file(path)
        if args.mode == "dialplan" and report.flow is not None:
            report.issues.extend(dialplan_mode_issues(path, report.flow))
        if report.flow is not None:
            report.issues.extend(_offline_issues(path, report.flow))
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


def _report_script(path: Path, *, quiet: bool) -> int:
    issues = validate_script_file(path)
    errors = [i for i in issues if i.is_error]
    for issue in issues:
        if issue.is_error or not quiet:
            print(issue, file=sys.stderr if issue.is_error else sys.stdout)
    if errors:
        print(f"{path}: {len(errors)} error(s)", file=sys.stderr)
        return 1
    if not quiet:
        warn = f", {len(issues)} warning(s)" if issues else ""
        print(f"{path}: ok (caller script{warn})")
    return 0


WHISPER_MULTILINGUAL_VOCABULARY = 51865


def offline_languages() -> dict[str, frozenset[str] | None]:
    """Languages (primary subtags) the installed offline models speak, per ``stt``/``tts`` (None: any).

    The piper voice's name starts with its language (``en_US-joe-medium``); a Whisper model is English-only
    when its vocabulary has fewer than 51865 tokens (Whisper's own multilingual test). Nothing is spoken
    offline when the ``offline`` extra is not installed."""
    import importlib.util

    out: dict[str, frozenset[str] | None] = {"stt": frozenset(), "tts": frozenset()}
    if importlib.util.find_spec("faster_whisper") is not None:
        try:
            from ivr.speech.offline import whisper_model_dir

            vocabulary = whisper_model_dir() / "vocabulary.txt"
            with vocabulary.open(encoding="utf-8") as f:
                tokens = sum(1 for _ in f)
            out["stt"] = frozenset({"en"}) if tokens < WHISPER_MULTILINGUAL_VOCABULARY else None
        except (OSError, ImportError, ProviderError):  # no model package: no offline STT at all
            out["stt"] = frozenset()
    if importlib.util.find_spec("piper") is not None:
        from ivr.speech.offline import PIPER_VOICE_NAME

        out["tts"] = frozenset({PIPER_VOICE_NAME.split("_")[0].lower()})
    return out


def _offline_issues(path: Path, flow: Flow) -> list[FlowIssue]:
    if not any(lang.split("-")[0].lower() != "en" for lang in flow.settings.spoken_languages):
        return []  # every offline model speaks English: nothing to look up
    defaults = {
        k: v for k, v in (("stt", os.environ.get("IVR_STT")), ("tts", os.environ.get("IVR_TTS"))) if v
    }
    smap = parse_yaml(path.read_text(encoding="utf-8"), str(path))[1]
    return offline_language_issues(flow, smap, offline_languages(), defaults)


def cmd_graph(args: argparse.Namespace) -> int:
    report = validate_file(args.file)
    if report.flow is None:
        for issue in report.errors:
            print(issue, file=sys.stderr)
        return 1
    print(to_dot(report.flow) if args.format == "dot" else to_mermaid(report.flow), end="")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    print(caller_json_schema_text() if args.caller else flow_json_schema_text(), end="")
    return 0
