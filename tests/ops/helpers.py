"""Reports as the call runtime produces them, for the records tests."""

from __future__ import annotations

from typing import Any

from ivr.call.report import MASKED_DIGIT, CallReport
from ivr.flow.builtins import MASK


def make_report(
    call_id: str, *, started_at: float = 1_700_000_000.0, outcome: str = "completed", **extra: Any
) -> CallReport:
    report = CallReport(
        call_id=call_id,
        flow="bank",
        outcome=outcome,
        reason="flow ended",
        started_at=started_at,
        ended_at=started_at + 42.5,
        errors=[],
        response_latency_ms=[412.0, 380.5],
        greeting_latency_ms=231.25,
        dtmf=["1", MASKED_DIGIT, MASKED_DIGIT, MASKED_DIGIT, MASKED_DIGIT],
        path=["welcome", "menu", "pin", "balance", "goodbye"],
        transcript=[
            ("ivr", "Welcome to the bank."),
            ("caller", "balance please"),
            ("ivr", "Please enter your PIN."),
            ("caller", MASK),
        ],
        variables={"intent": "balance", "pin": MASK, "attempts": 1, "amount": 12.5},
    )
    for key, value in extra.items():
        setattr(report, key, value)
    return report
