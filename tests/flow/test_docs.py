"""The reference documents every key of the schema and every built-in variable."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from ivr.flow import model, model_captures, model_hours, model_settings, model_turns
from ivr.flow.builtins import BUILTIN_ROOTS, CALL_FIELDS, LAST_FIELDS
from ivr.flow.calendar import HOURS_FIELDS
from ivr.flow.clock import TIME_FIELDS

_README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
DOC = _README[_README.index("## Flow language reference") :]
DOC = DOC[: DOC.index("\n## ", 10)]
MODELS = [
    m
    for module in (model, model_captures, model_hours, model_settings, model_turns)
    for m in vars(module).values()
    if isinstance(m, type)
    and issubclass(m, BaseModel)
    and m.__module__ == module.__name__
    and not m.__name__.startswith("_")
]


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_every_key_is_documented(cls: type[BaseModel]) -> None:
    for name, info in cls.model_fields.items():
        key = info.alias or name
        assert f"`{key}`" in DOC or f"{key}:" in DOC, (
            f"{cls.__name__}.{key} is not in README's flow language reference"
        )


def test_every_step_kind_and_builtin_is_documented() -> None:
    for kind in model.STEP_KINDS:
        assert f"`{kind}`" in DOC
    for field in CALL_FIELDS:
        assert f"`call.{field}`" in DOC
    for field in LAST_FIELDS:
        assert f"`last.{field}`" in DOC
    for root in BUILTIN_ROOTS:
        assert f"`{root}" in DOC
    for field in TIME_FIELDS:
        assert f"`now.{field}`" in DOC
    for field in HOURS_FIELDS:
        assert f"`hours.NAME.{field}`" in DOC
    for capture_type in model.CAPTURE_TYPES:
        assert f"`{capture_type}`" in DOC
    assert "global DTMF intents are suspended" in DOC
