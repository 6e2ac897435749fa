"""What one simulated call gives back: the prompts, barge-ins, transcript and call report, and the
caller script's expectations checked against them.

Apart from :mod:`ivr.simulation.runner`, which places the call and fills the result in (and re-exports
``SimulationResult``, ``SimulationError`` and ``SpeechMode`` for the code that imports them from there).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ivr.call.report import CallReport
from ivr.simulation import script as sc

SpeechMode = Literal["offline", "text"]
END_NAMES = {"transferred": "transfer"}


class SimulationError(Exception):
    """The simulation could not run (missing engines, a broken script); one line for the user."""


@dataclass
class Check:
    what: str
    passed: bool
    detail: str = ""


@dataclass
class SimulationResult:
    flow: str
    mode: SpeechMode
    report: CallReport | None
    prompts: list[tuple[str, str]] = field(default_factory=list)
    """(step, text) of every prompt the IVR started, in order."""
    barge_ins: list[str] = field(default_factory=list)
    """Steps whose prompt the caller interrupted (speech or keys), in order."""
    checks: list[Check] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    transcript: list[str] = field(default_factory=list)
    """The printed conversation, line by line."""

    @property
    def passed(self) -> bool:
        return not self.errors and all(c.passed for c in self.checks)


def _evaluate(script: sc.CallerScript, result: SimulationResult) -> None:
    report = result.report
    prompts = [text for _, text in result.prompts]
    for step in script.steps:
        if isinstance(step, sc.ExpectPrompt):
            ok = any(step.expect_prompt.lower() in p.lower() for p in prompts)
            result.checks.append(
                Check(f"expect_prompt {step.expect_prompt!r}", ok, "" if ok else "never said")
            )
        elif isinstance(step, sc.ExpectStep):
            path = report.path if report else []
            ok = step.expect_step in path or any(p.endswith(f":{step.expect_step}") for p in path)
            result.checks.append(
                Check(f"expect_step {step.expect_step}", ok, "" if ok else f"path was {' -> '.join(path)}")
            )
        elif isinstance(step, sc.ExpectBargeIn):
            barged = step.expect_barge_in
            ok = any(s == barged or s.endswith(f":{barged}") for s in result.barge_ins)
            seen = ", ".join(result.barge_ins) or "none"
            result.checks.append(
                Check(f"expect_barge_in {barged}", ok, "" if ok else f"interrupted prompts: {seen}")
            )
        elif isinstance(step, sc.ExpectVar):
            variables = report.variables if report else {}
            for name, want in step.expect_var.items():
                got = variables.get(name)
                ok = got == want or str(got) == str(want)
                result.checks.append(Check(f"expect_var {name}={want!r}", ok, "" if ok else f"was {got!r}"))
        elif isinstance(step, sc.ExpectEnd):
            outcome = report.outcome if report else "none"
            got = END_NAMES.get(outcome, outcome)
            ok = got == step.expect_end
            result.checks.append(
                Check(f"expect_end {step.expect_end}", ok, "" if ok else f"ended with {got}")
            )
