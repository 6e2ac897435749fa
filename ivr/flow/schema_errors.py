"""Passes 1 and 2 of validation: YAML traps and schema errors, explained at their line and column.

Unknown keys are found by walking the raw data alongside the pydantic models (so each gets a "did you
mean" from the keys allowed at that spot); pydantic's own errors are mapped back onto the raw key path
(dropping union tags) and reworded for flow authors, with YAML 1.1 traps (``yes`` read as a boolean,
``#`` read as a comment, ``0100`` read as octal, ``10:30`` read as base 60) spelled out.
"""

from __future__ import annotations

import re
import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from ivr.flow.errors import FlowIssue, KeyPath, did_you_mean, format_path
from ivr.flow.model import (
    STEP_KINDS,
    _StepBase,
)
from ivr.flow.source import YAML11_BOOL_WORDS, SourceMap

FLOW_SUFFIXES = (".yaml", ".yml")
KIND_MODELS: dict[str, type[_StepBase]] = {cls.kind: cls for cls in _StepBase.__subclasses__()}
_OCTAL = re.compile(r"^[-+]?0[0-7_]+$")
_SEXAGESIMAL = re.compile(r"^[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?$")
_DTMF_PATTERN = r"^[0-9*#A-D]$"


def describe(value: Any) -> str:
    if value is None:
        return "nothing (an empty value)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _trap_hint(smap: SourceMap, path: KeyPath, value: Any) -> str | None:
    raw = smap.plain_text(path)
    if isinstance(value, bool) and raw in YAML11_BOOL_WORDS:
        return f"YAML reads an unquoted {raw} as a boolean; write it in quotes: '{raw}'"
    if value is None and raw in ("", None):
        line = smap.line_text(smap.mark(path).line)
        key = str(path[-1]) if path else ""
        after = line.split(f"{key}:", 1)[1] if f"{key}:" in line else line
        if "#" in after or line.lstrip().startswith("- #"):
            return "an unquoted # starts a YAML comment, so the value is empty; write it in quotes: '#'"
    return None


def _unwrap(tp: Any) -> Any:
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
            continue
        if origin in (Union, types.UnionType):
            args = [a for a in get_args(tp) if a is not type(None)]
            if len(args) == 1:
                tp = args[0]
                continue
        return tp


def _is_step_union(tp: Any) -> bool:
    if get_origin(tp) not in (Union, types.UnionType):
        return False
    return any(isinstance(_unwrap(a), type) and issubclass(_unwrap(a), _StepBase) for a in get_args(tp))


def check_keys(raw: Any, tp: Any, path: KeyPath, smap: SourceMap, out: list[FlowIssue]) -> None:
    """Walk raw data alongside the schema: unknown keys (with suggestions) and step kind problems."""
    tp = _unwrap(tp)
    if _is_step_union(tp):
        if not isinstance(raw, dict):
            out.append(
                smap.issue(
                    path,
                    f"a step must be a mapping, got {describe(raw)}",
                    expected=f"a mapping with one kind key ({', '.join(STEP_KINDS)})",
                )
            )
            return
        kinds = [k for k in STEP_KINDS if k in raw]
        if not kinds:
            guesses = [h for k in raw if (h := did_you_mean(k, STEP_KINDS))]
            out.append(
                smap.issue(
                    path,
                    f"step '{path[-1]}' has no kind key",
                    at_key=True,
                    expected=f"one of {', '.join(STEP_KINDS)}",
                    hint=guesses[0] if guesses else None,
                )
            )
            return
        if len(kinds) > 1:
            out.append(
                smap.issue(
                    path,
                    f"step '{path[-1]}' has several kind keys ({', '.join(kinds)})",
                    at_key=True,
                    expected="exactly one kind key per step",
                    hint="split it into one step per kind, linked with next",
                )
            )
            return
        tp = KIND_MODELS[kinds[0]]
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        if not isinstance(raw, dict):
            return  # pydantic reports the type error (or a before-validator converts it)
        fields = {(info.alias or name): info for name, info in tp.model_fields.items()}
        for key, value in raw.items():
            if isinstance(key, bool) and {"yes", "no"} <= set(fields):
                continue  # confirm: {yes: a, no: b}, read as booleans, converted by the model
            if key not in fields:
                hint = did_you_mean(key, fields)
                raw_key = smap.plain_text((*path, key, "<key>"))
                if isinstance(key, bool) and raw_key in YAML11_BOOL_WORDS:
                    hint = f"YAML reads an unquoted {raw_key} as a boolean; quote it"
                where = f"step '{path[1]}'" if len(path) >= 2 and path[0] == "steps" else format_path(path)
                kind = getattr(tp, "kind", None)
                out.append(
                    smap.issue(
                        (*path, key),
                        f"unknown key '{key}' in {where}"
                        + (f" ({kind} step)" if kind and len(path) == 2 else ""),
                        expected=f"one of {', '.join(sorted(fields))}",
                        hint=hint,
                        at_key=True,
                    )
                )
                continue
            check_keys(value, fields[key].annotation, (*path, key), smap, out)
        return
    origin = get_origin(tp)
    if origin is dict and isinstance(raw, dict):
        value_tp = get_args(tp)[1]
        for key, value in raw.items():
            check_keys(value, value_tp, (*path, key), smap, out)
    elif origin is list and isinstance(raw, list):
        item_tp = get_args(tp)[0]
        for i, value in enumerate(raw):
            check_keys(value, item_tp, (*path, i), smap, out)


def lookup(data: Any, path: KeyPath) -> Any:
    for item in path:
        if isinstance(data, dict):
            if item not in data:
                return None
            data = data[item]
        elif isinstance(data, list) and isinstance(item, int) and 0 <= item < len(data):
            data = data[item]
        else:
            return None
    return data


def scalar_traps(data: Any, smap: SourceMap) -> list[FlowIssue]:
    """Unquoted scalars YAML 1.1 turns into something else: octal and base-60 numbers, ``#`` comments."""
    out = []
    for path, raw in smap.plain_scalars.items():
        if path and path[-1] == "<key>":
            continue
        value = lookup(data, path)
        if value is None and raw == "" and path and path[-1] in ("dtmf", "terminator"):
            hint = _trap_hint(smap, path, value)
            if hint:
                out.append(smap.issue(path, f"'{path[-1]}' is empty", hint=hint))
        if isinstance(value, int | float) and not isinstance(value, bool):
            if _OCTAL.match(raw):
                out.append(
                    smap.issue(
                        path,
                        f"YAML 1.1 reads {raw} as the octal number {value}",
                        hint=f"write it in quotes: '{raw}'",
                    )
                )
            elif _SEXAGESIMAL.match(raw):
                out.append(
                    smap.issue(
                        path,
                        f"YAML 1.1 reads {raw} as the base-60 number {value}",
                        hint=f"write it in quotes: '{raw}'",
                    )
                )
    return out


def _same_key(node: dict[Any, Any], item: Any) -> Any:
    """The dict's own key equal to ``item``, preferring the same type (pydantic turns True into 1)."""
    for key in node:
        if key == item and type(key) is type(item):
            return key
    for key in node:
        if key == item:
            return key
    return item


def _raw_path(data: Any, loc: tuple[Any, ...]) -> tuple[KeyPath, bool]:
    """Map a pydantic error location onto the raw data's key path (dropping union tags)."""
    path: list[Any] = []
    node = data
    at_key = False
    for i, item in enumerate(loc):
        if item == "[key]":
            at_key = True
            break
        if len(path) == 2 and path[0] == "steps" and i == 2 and item in STEP_KINDS:
            continue  # tagged-union tag
        if isinstance(node, dict) and item in node:
            key = _same_key(node, item)
            path.append(key)
            node = node[key]
        elif isinstance(node, list) and isinstance(item, int) and 0 <= item < len(node):
            path.append(item)
            node = node[item]
        elif isinstance(node, dict) and i == len(loc) - 1:
            path.append(item)  # a missing key
        elif isinstance(item, str) and item.startswith(("function-", "list[", "dict[")):
            continue
        else:
            path.append(item)
            node = None
    return tuple(path), at_key


def schema_issues(
    exc: ValidationError, data: Any, smap: SourceMap, seen: set[KeyPath], suggested: set[KeyPath]
) -> list[FlowIssue]:
    """Pydantic errors as findings; ``seen`` paths were already reported, ``suggested`` keys were offered
    as "did you mean" for a misspelt key (so "missing key" would only repeat it)."""
    out: list[FlowIssue] = []
    for err in exc.errors():
        etype = err["type"]
        if etype in ("extra_forbidden", "step_kind"):
            continue
        path, at_key = _raw_path(data, tuple(err["loc"]))
        if any(path[: len(s)] == s for s in seen):
            continue
        value = err.get("input")
        msg = str(err["msg"]).removeprefix("Value error, ")
        expected: str | None = None
        hint: str | None = None
        if etype == "missing":
            key = path[-1] if path else "?"
            if path in suggested:
                continue
            msg = f"missing required key '{key}'"
            if key == "start":
                hint = "add 'start: NAME' naming the first step"
        elif etype == "string_pattern_mismatch":
            pattern = (err.get("ctx") or {}).get("pattern", "")
            if pattern == _DTMF_PATTERN:
                msg, expected = f"{describe(value)} is not a DTMF key", "one key: 0-9, *, # or A-D (quoted)"
            elif "A-Za-z_" in pattern:
                msg = f"{describe(value)} is not a valid name"
                expected = "letters, digits and _ , not starting with a digit"
            else:
                expected = f"text matching {pattern}"
        elif etype == "literal_error":
            msg = f"{describe(value)} is not allowed here"
            expected = str((err.get("ctx") or {}).get("expected", ""))
        elif etype == "value_error":
            named = re.match(r"^'(\w+)'", msg)
            node = lookup(data, path)
            if named and isinstance(node, dict) and named.group(1) in node:
                path = (*path, named.group(1))
                at_key = True
        elif etype.endswith("_type") or etype.endswith("_parsing"):
            expected = msg.removeprefix("Input should be ").removeprefix("a valid ").split(",")[0]
            msg = f"wrong type: got {describe(value)}"
            hint = _trap_hint(smap, path, value)
            if at_key:
                raw_key = smap.plain_text((*path, "<key>"))
                msg = f"key {raw_key or describe(path[-1] if path else value)} is not text"
                if raw_key in YAML11_BOOL_WORDS:
                    hint = f"YAML reads an unquoted {raw_key} as a boolean; write it in quotes: '{raw_key}'"
        out.append(smap.issue(path, msg, expected=expected, hint=hint, at_key=at_key))
    return out
