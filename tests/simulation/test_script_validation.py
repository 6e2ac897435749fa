"""``ivr validate`` knows caller scripts: their own schema, findings at their line, cross-checks against
the flow they play, and a committed JSON Schema that matches ``ivr schema --caller``."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.cli import main
from ivr.simulation.script_check import caller_json_schema_text, validate_script_file

from .conftest import CALLERS, FLOWS, SHIPPED


def test_every_shipped_script_validates(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(CALLERS)]) == 0
    out = capsys.readouterr().out
    assert out.count(": ok (caller script") == len(SHIPPED)


def test_a_script_is_not_reported_as_a_broken_flow(capsys: pytest.CaptureFixture[str]) -> None:
    """Before, a caller script got six flow errors (missing name, start ...)."""
    assert main(["validate", str(CALLERS / "bank.happy.caller.yaml")]) == 0
    captured = capsys.readouterr()
    assert "missing required key 'name'" not in captured.err
    assert "ok (caller script)" in captured.out


def write(tmp_path: Path, name: str, text: str) -> Path:
    (tmp_path / "bank.yaml").write_text((FLOWS / "bank.yaml").read_text(encoding="utf-8"))
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_findings_have_their_line_and_a_hint(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "bank.bad.caller.yaml",
        "steps:\n  - wait_for: hi\n  - sayy: hello\n  - press: 12x\nwebhoks: []\n",
    )
    found = [(i.line, i.column, i.message, i.hint) for i in validate_script_file(path)]
    assert found[0][:2] == (3, 5)
    assert "no step key" in found[0][2]
    assert found[0][3] == "did you mean 'say'?"
    assert found[1][:3] == (4, 12, "keys must be 0-9 * # A-D, got '12x'")
    assert found[2][:2] == (5, 1)
    assert found[2][3] == "did you mean 'webhooks'?"


def test_expectations_are_checked_against_the_flow(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "bank.x.caller.yaml",
        "steps:\n  - expect_step: verfy\n  - expect_var: {acount: '1'}\n  - expect_barge_in: welcome\n",
    )
    found = [(i.line, i.message, i.hint) for i in validate_script_file(path)]
    assert found == [
        (2, "flow bank has no step 'verfy'", "did you mean 'verify'?"),
        (3, "flow bank has no variable 'acount'", "did you mean 'account'?"),
    ]


def test_a_missing_env_for_the_flows_webhooks_is_a_warning(tmp_path: Path) -> None:
    text = (
        "webhooks:\n  - match: POST https://bank.example.com/api/v1/verify\nsteps:\n  - expect_end: hangup\n"
    )
    [issue] = validate_script_file(write(tmp_path, "bank.y.caller.yaml", text))
    assert (issue.severity, issue.line) == ("warning", 2)
    assert "env.BANK_API_TOKEN" in issue.message
    fixed = "env: {BANK_API_TOKEN: t}\n" + text
    assert validate_script_file(write(tmp_path, "bank.y.caller.yaml", fixed)) == []


def test_committed_caller_schema_matches_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "--caller"]) == 0
    printed = capsys.readouterr().out
    assert printed == caller_json_schema_text()
    committed = (CALLERS / "schema.json").read_text(encoding="utf-8")
    assert committed == printed, (
        "flows/callers/schema.json is stale: run `ivr schema --caller > flows/callers/schema.json`"
    )
    assert '"wait_for"' in printed
    assert '"env"' in printed
