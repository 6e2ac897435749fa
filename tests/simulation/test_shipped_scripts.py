"""The caller scripts shipped with the example flows pass, and ``ivr test`` reports like a test runner.

Every example flow (subflows aside) ships ``flows/callers/<flow>.<case>.caller.yaml`` for the happy path,
no-input, no-match and a barge-in; each runs in text mode through the whole stack (simulated Asterisk,
ARI, AudioSocket, the app, the flow engine) with its webhooks answered by the script's mocks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from ivr.cli import main
from ivr.simulation import script as sc
from ivr.simulation.runner import SimulationResult

from .conftest import CALLERS, DATA, FLOWS, SHIPPED, flow_for

CASES = ("happy", "no_input", "no_match", "barge_in")


def _flow_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def example_flows() -> list[str]:
    """Flow names in ``flows/`` that no other flow calls as a subflow."""
    flows = {p.stem: _flow_yaml(p) for p in FLOWS.glob("*.yaml")}
    called = {
        step["subflow"]
        for flow in flows.values()
        for step in flow.get("steps", {}).values()
        if isinstance(step, dict) and "subflow" in step
    }
    return sorted(set(flows) - called)


def test_every_example_flow_ships_its_four_caller_scripts() -> None:
    flows = example_flows()
    assert {"bank", "pizza", "reminder"} <= set(flows)
    assert "address" not in flows  # a subflow: it runs inside pizza's scripts
    shipped = {p.name for p in SHIPPED}
    missing = [f"{flow}.{case}.caller.yaml" for flow in flows for case in CASES]
    assert [name for name in missing if name not in shipped] == []
    assert all(flow_for(p).is_file() for p in SHIPPED), "a caller script names no flow file"


@pytest.mark.parametrize("script", SHIPPED, ids=lambda p: p.name.removesuffix(".caller.yaml"))
def test_shipped_script_passes(
    script: Path, shipped_results: dict[str, SimulationResult | BaseException]
) -> None:
    result = shipped_results[script.name]
    if isinstance(result, BaseException):
        raise result
    failed = [f"{c.what}: {c.detail}" for c in result.checks if not c.passed]
    report = "\n".join([*result.errors, *failed, "transcript:", *result.transcript])
    assert result.mode == "text"
    assert result.checks, f"{script.name} checks nothing\n{report}"
    assert result.passed, f"{script.name} failed:\n{report}"


@pytest.mark.parametrize("script", SHIPPED, ids=lambda p: p.name.removesuffix(".caller.yaml"))
def test_shipped_script_has_meaningful_expectations(script: Path) -> None:
    """Each script ends with an outcome and checks what its case is about."""
    steps = sc.load_script(script).steps
    case = script.name.split(".")[1]
    expectations = [s for s in steps if not isinstance(s, sc.ACTIONS)]
    assert any(isinstance(s, sc.ExpectEnd) for s in steps)
    assert len(expectations) >= 4
    if case == "barge_in":
        assert any(isinstance(s, sc.BargeIn) for s in steps)
        assert any(isinstance(s, sc.ExpectBargeIn) for s in steps)
    if case == "no_match":
        assert any(isinstance(s, sc.Say) for s in steps)
    if case == "no_input":
        settings = _flow_yaml(flow_for(script)).get("settings", {})
        timeout = settings.get("no_input_timeout_ms", 5000)
        retries = settings.get("max_retries", 2)
        silent = sum(s.silence for s in steps if isinstance(s, sc.Silence))
        assert silent >= timeout * (retries + 1), "not silent long enough to use up the retries"
        assert not any(isinstance(s, sc.Say | sc.Press | sc.BargeIn) for s in steps)


def test_ivr_test_passes_a_shipped_script(capsys: pytest.CaptureFixture[str]) -> None:
    script = CALLERS / "pizza.barge_in.caller.yaml"
    assert main(["test", str(flow_for(script)), str(script)]) == 0
    out = capsys.readouterr().out
    assert f"PASS {script}" in out
    assert "text mode" in out
    assert out.rstrip().endswith("1 passed, 0 failed")


def test_ivr_test_fails_with_the_transcript(capsys: pytest.CaptureFixture[str]) -> None:
    script = DATA / "pizza.wrong.caller.yaml"
    assert main(["test", str(FLOWS / "pizza.yaml"), str(script)]) == 1
    out = capsys.readouterr().out
    assert f"FAIL {script}" in out
    assert "FAIL expect_prompt 'Welcome to Burger Palace': never said" in out
    assert "FAIL expect_end hangup: ended with caller_hangup" in out
    assert "FAIL expect_step" not in out  # that one held: only failures are listed above the transcript
    assert "PASS expect_step order_or_status" in out  # ... and the transcript's summary shows it
    assert "transcript:" in out
    assert 'order_or_status: "Would you like to place an order' in out
    assert "(hangs up)" in out
    assert out.rstrip().endswith("0 passed, 1 failed")


def test_ivr_test_reports_a_broken_script(capsys: pytest.CaptureFixture[str]) -> None:
    script = DATA / "broken.caller.yaml"
    assert main(["test", str(FLOWS / "pizza.yaml"), str(script)]) == 1
    out = capsys.readouterr().out
    assert f"ERROR {script}: step 2 (press)" in out
    assert 'press: "1#"' in out
    assert out.rstrip().endswith("0 passed, 1 failed")


def test_flows_directory_holds_only_flows() -> None:
    """``ivr run`` and ``ivr validate flows`` load every flows/*.yaml as a flow: no scripts there."""
    assert SHIPPED, "no flows/callers/*.caller.yaml found"
    assert not list(FLOWS.glob("*.caller.yaml"))
    assert main(["validate", str(FLOWS)]) == 0
