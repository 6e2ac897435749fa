"""Log levels mean something to an operator (defect 8): a flow's template error is one ERROR line; a
caller who never answers (no-input retries used up) is an expected outcome, never an ERROR."""

from __future__ import annotations

import logging

import pytest

from .conftest import DATA, close_stack, make_stack


async def test_template_error_once_at_error_and_no_input_never_at_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    stack = await make_stack(DATA, "loglevels")
    try:
        caller = await stack.sim.place_call(args=["flow=loglevels"])
        leg = await stack.leg(caller.id)
        await leg.wait_heard("Something went wrong")  # the template error took the flow's error path
        await stack.wait_ended(timeout=15)  # nobody presses anything: no-input twice, then the end
    finally:
        await close_stack(stack)
    [report] = stack.app.reports
    assert "again" in report.path
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert "template error in step hello" in errors[0]
    assert "name" in errors[0], "the one line says what was wrong"
    no_input = [r for r in caplog.records if "retries used up" in r.getMessage()]
    assert no_input, "the caller's silence is logged"
    assert all(r.levelno <= logging.WARNING for r in no_input)
