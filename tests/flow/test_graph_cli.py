"""`ivr validate`, `ivr graph`, `ivr schema`, the diagrams and the committed JSON Schema."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ivr.cli import main
from ivr.flow.graph import to_dot, to_mermaid
from ivr.flow.model import Flow
from ivr.flow.schema import flow_json_schema, flow_json_schema_text
from ivr.flow.validate import validate_file

from .helpers import DATA_DIR, FLOWS_DIR


def _flow(name: str) -> Flow:
    flow = validate_file(FLOWS_DIR / f"{name}.yaml").flow
    assert flow is not None
    return flow


def test_mermaid_draws_every_step_and_distinct_edge_styles() -> None:
    flow = _flow("bank")
    text = to_mermaid(flow)
    assert text.startswith("flowchart TD\n")
    for name in flow.steps:
        assert f"s_{name}" in text
    assert '  s_main_menu -->|"transactions [1]"| s_say_transaction' in text
    assert '  s_main_menu -.->|"no_match"| s_to_agent' in text
    assert '  s_verify ==>|"error"| s_technical_difficulty' in text
    assert '  __intents -.->|"operator"| s_to_agent' in text
    assert "linkStyle" in text
    assert "stroke:#1f77b4" in text  # no_input colour
    assert "stroke:#ff7f0e" in text  # no_match colour
    assert "stroke:#d62728" in text  # error colour


def test_mermaid_edge_labels_are_escaped() -> None:
    text = to_mermaid(_flow("reminder"))
    assert '|"offer.time is defined and offer.time"|' in text
    assert "s_end([" in text  # a step called "end" does not break Mermaid


def test_dot_output() -> None:
    text = to_dot(_flow("pizza"))
    assert text.startswith('digraph "pizza" {')
    assert text.rstrip().endswith("}")
    assert 's_get_address [label="get_address\\nsubflow address", shape=box3d];' in text
    assert 's_order_or_status -> s_sorry [label="no_input", style=dashed, color="#1f77b4"' in text
    assert 's_place_order -> s_order_failed [label="error", style=bold, color="#d62728"' in text


def test_cli_validate_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", *(str(p) for p in sorted(FLOWS_DIR.glob("*.yaml")))]) == 0
    out = capsys.readouterr().out
    assert "bank.yaml: ok (19 steps)" in out
    assert main(["validate", str(DATA_DIR / "unreachable.yaml")]) == 0
    assert "warning" in capsys.readouterr().out
    assert main(["validate", str(FLOWS_DIR / "bank.yaml"), str(DATA_DIR / "bad_target.yaml")]) == 1
    err = capsys.readouterr().err
    assert (
        "bad_target.yaml:9:15: error: steps.menu.choices.one.next: target step 'byee' does not exist" in err
    )
    assert main(["validate", str(FLOWS_DIR)]) == 0
    assert "reminder.yaml: ok" in capsys.readouterr().out
    assert main(["validate", str(DATA_DIR / "missing.yaml")]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_cli_graph(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", str(FLOWS_DIR / "reminder.yaml")]) == 0
    assert capsys.readouterr().out.startswith("flowchart TD")
    assert main(["graph", "--format", "dot", str(FLOWS_DIR / "reminder.yaml")]) == 0
    assert capsys.readouterr().out.startswith('digraph "reminder"')
    assert main(["graph", str(DATA_DIR / "no_kind.yaml")]) == 1
    assert "has no kind key" in capsys.readouterr().err


def test_cli_schema_matches_committed_copy(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    printed = capsys.readouterr().out
    assert printed == flow_json_schema_text()
    committed = (FLOWS_DIR / "schema.json").read_text(encoding="utf-8")
    assert committed == printed, "flows/schema.json is stale: run `ivr schema > flows/schema.json`"


def test_schema_describes_every_step_kind() -> None:
    schema = flow_json_schema()
    assert schema["$schema"].startswith("https://json-schema.org/")
    text = json.dumps(schema)
    for kind in (
        "SayStep",
        "PlayStep",
        "AskStep",
        "BranchStep",
        "SetStep",
        "WebhookStep",
        "TransferStep",
        "HangupStep",
        "GotoStep",
        "SubflowStep",
        "ReturnStep",
    ):
        assert kind in schema["$defs"], kind
    assert '"else"' in text
    assert '"if"' in text
    assert schema["$defs"]["SayStep"]["additionalProperties"] is False


def test_ivr_entry_point_runs() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from ivr.cli import main; sys.exit(main(sys.argv[1:]))",
            "validate",
            str(FLOWS_DIR / "bank.yaml"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
