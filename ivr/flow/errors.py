"""Validation findings that point an author at the exact spot in a flow file.

Every finding carries file, line and column (1-based, from the YAML node marks), the key path
(``steps.menu.choices.balance.dtmf``), what was wrong and what was expected, so a newcomer can fix a
flow without reading the code.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]
PathItem = str | int
KeyPath = tuple[PathItem, ...]


def format_path(path: Sequence[PathItem]) -> str:
    """Render a key path the way an author reads it: ``steps.menu.choices[0].next``."""
    out = ""
    for item in path:
        if isinstance(item, int) and not isinstance(item, bool):
            out += f"[{item}]"
        else:
            out += ("." if out else "") + str(item)
    return out or "<top level>"


@dataclass(frozen=True)
class FlowIssue:
    """One problem found in a flow file."""

    severity: Severity
    file: str
    line: int
    column: int
    path: KeyPath
    message: str
    expected: str | None = None
    hint: str | None = None

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def __str__(self) -> str:
        text = f"{self.file}:{self.line}:{self.column}: {self.severity}: {format_path(self.path)}: {self.message}"
        if self.expected:
            text += f"; expected {self.expected}"
        if self.hint:
            text += f" (hint: {self.hint})"
        return text


class FlowError(Exception):
    """A flow file (or one of its subflows) could not be loaded because it has errors."""

    def __init__(self, issues: Iterable[FlowIssue]) -> None:
        self.issues: tuple[FlowIssue, ...] = tuple(issues)
        errors = [i for i in self.issues if i.is_error]
        lines = "\n".join(str(i) for i in errors) or "unknown flow error"
        super().__init__(f"{len(errors)} error(s) in flow:\n{lines}")


def did_you_mean(word: object, options: Iterable[str]) -> str | None:
    """A "did you mean 'next'?" hint for a misspelt name, if a close one exists."""
    close = difflib.get_close_matches(str(word), sorted(options), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None
