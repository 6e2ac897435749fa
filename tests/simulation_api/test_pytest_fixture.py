"""The ``ivr_call`` fixture flow authors use (installed as a pytest plugin)."""

from __future__ import annotations

from pathlib import Path

from ivr.testing import CallFlow

MENU = Path(__file__).parents[1] / "call" / "data" / "menu.yaml"


async def test_fixture_runs_a_scripted_call(ivr_call: CallFlow) -> None:
    result = await ivr_call(
        MENU,
        steps=[
            {"wait_for": "sales or support"},
            {"press": "1"},
            {"expect_step": "sales"},
            {"expect_prompt": "Sales it is"},
            {"expect_end": "hangup"},
        ],
    )
    assert result.passed, "\n".join(result.transcript)
    assert result.mode == "text"


async def test_fixture_reports_a_failed_expectation(ivr_call: CallFlow) -> None:
    result = await ivr_call(
        MENU, steps=[{"wait_for": "sales or support"}, {"press": "2"}, {"expect_step": "sales"}]
    )
    assert not result.passed
    [check] = result.checks
    assert "support" in check.detail
