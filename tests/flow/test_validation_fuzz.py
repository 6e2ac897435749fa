"""The validator never crashes: any YAML gets findings, never a traceback."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.flow.model import STEP_KINDS
from ivr.flow.validate import validate_source

from .helpers import FLOWS_DIR

KEYS = [
    *STEP_KINDS,
    "name",
    "start",
    "steps",
    "next",
    "choices",
    "capture",
    "confirm",
    "slot",
    "type",
    "dtmf",
    "phrases",
    "if",
    "else",
    "url",
    "json",
    "vars",
    "intents",
    "settings",
    "no_input",
    "no_match",
    "prompt",
    "retries",
    "with",
    "save",
    "endpoint",
    "extension",
    "values",
    "digits",
    "yes",
    "no",
    "a",
    "b",
    "{{ x }}",
]
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 200), st.sampled_from(KEYS), st.text(max_size=8)
)
VALUES: st.SearchStrategy[Any] = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=4),
    max_leaves=25,
)


@settings(deadline=None, max_examples=300)
@given(VALUES)
def test_random_documents_never_crash_the_validator(doc: Any) -> None:
    report = validate_source(yaml.safe_dump(doc), "fuzz.yaml")
    for issue in report.issues:
        assert issue.line >= 1
        assert issue.column >= 1
    assert (report.flow is None) == bool(report.errors)


@settings(deadline=None, max_examples=200)
@given(st.data())
def test_mutated_example_flows_never_crash_the_validator(data: st.DataObject) -> None:
    text = (FLOWS_DIR / "bank.yaml").read_text(encoding="utf-8")
    lines = text.splitlines()
    index = data.draw(st.integers(0, len(lines) - 1))
    replacement = data.draw(
        st.sampled_from(
            [
                "",
                "    nxt: x",
                "  foo:",
                "      dtmf: #",
                "        - yes",
                "    say: '{{ broken'",
                "\t",
                "- a",
                "    next: nowhere",
            ]
        )
    )
    lines[index] = replacement
    report = validate_source("\n".join(lines), "bank.yaml")
    assert (report.flow is None) == bool(report.errors)
