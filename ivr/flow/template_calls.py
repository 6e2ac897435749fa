"""What templates may call, and at what price: globals and methods.

Method calls are an allow-list: the read-only methods of ``str``, ``list``, ``dict`` and friends, with
the growing ones (``center``, ``replace``, ``join``, ``format``...) size-checked; anything else is refused,
so a value from a webhook cannot smuggle in a callable that allocates or loops unchecked. Macros and
recursive loops are limited in depth; ``range()`` and ``lipsum()`` in size.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

from jinja2.runtime import LoopContext, Macro, Undefined
from jinja2.utils import (
    Cycler,
    Joiner,
    Namespace,
    generate_lorem_ipsum,
)

from ivr.flow.template_budget import (
    CALL_COST,
    CHARS_PER_UNIT,
    MAX_CALL_DEPTH,
    MAX_ITEMS,
    MAX_TEXT_CHARS,
    SCAN_CHARS_PER_UNIT,
    WALK_COST,
    TemplateError,
    TemplateLimitError,
    active,
    charge,
    counted,
    data_weight,
    need_text,
    need_width,
    too_long,
)
from ivr.flow.template_filters import Args, Kwargs, after, replace_size
from ivr.flow.template_ops import str_format


class FlowSecurityError(TemplateError):
    """A template called something flows may not call (a method outside the allow-list)."""


# ---------------------------------------------------------------- globals


def bounded_range(*args: int) -> range:
    """``range()`` of at most :data:`MAX_ITEMS` numbers."""
    numbers = range(*args)
    try:
        count = len(numbers)
    except OverflowError:
        count = MAX_ITEMS + 1
    if count > MAX_ITEMS:
        raise TemplateLimitError(f"range() of {count:,} numbers; the limit is {MAX_ITEMS:,}")
    return numbers


def bounded_lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    """Jinja's ``lipsum`` with at most 10 paragraphs of at most 100 words."""
    if not (0 <= n <= 10 and 0 < min <= max <= 100):
        raise TemplateLimitError("lipsum() is limited to 10 paragraphs of 100 words")
    return generate_lorem_ipsum(n, html, min, max)


FLOW_GLOBALS: dict[str, Any] = {
    "range": bounded_range,
    "lipsum": bounded_lipsum,
    "dict": dict,
    "cycler": Cycler,
    "joiner": Joiner,
    "namespace": Namespace,
}
_OWN_CALLABLES = (bounded_range, bounded_lipsum)

# ---------------------------------------------------------------- method calls


def _text_size(args: Args) -> int:
    return sum(len(a) for a in args if isinstance(a, str))


def _pad_check(s: str, args: Args, kwargs: Kwargs) -> None:
    width = args[0] if args else kwargs.get("width", 0)
    need_width(width)
    need_text(max(len(s), width if isinstance(width, int) else 0))


def _expandtabs_check(s: str, args: Args, kwargs: Kwargs) -> None:
    size = args[0] if args else kwargs.get("tabsize", 8)
    need_width(size, "tab size")
    need_text(len(s) + s.count("\t") * (size if isinstance(size, int) else 0))


def _replace_check(s: str, args: Args, kwargs: Kwargs) -> None:
    count = args[2] if len(args) > 2 else kwargs.get("count", -1)
    replace_size(s, args[0] if args else "", args[1] if len(args) > 1 else "", count)


_STR_READERS = frozenset(
    [
        "capitalize",
        "casefold",
        "count",
        "endswith",
        "find",
        "index",
        "isalnum",
        "isalpha",
        "isascii",
        "isdecimal",
        "isdigit",
        "isidentifier",
        "islower",
        "isnumeric",
        "isprintable",
        "isspace",
        "istitle",
        "isupper",
        "lower",
        "lstrip",
        "partition",
        "removeprefix",
        "removesuffix",
        "rfind",
        "rindex",
        "rpartition",
        "rsplit",
        "rstrip",
        "split",
        "splitlines",
        "startswith",
        "strip",
        "swapcase",
        "title",
        "upper",
        "unescape",
        "striptags",
    ]
)
_STR_CHECKS: dict[str, Callable[[str, Args, Kwargs], None]] = {
    "center": _pad_check,
    "ljust": _pad_check,
    "rjust": _pad_check,
    "zfill": _pad_check,
    "expandtabs": _expandtabs_check,
    "replace": _replace_check,
}
_READERS: dict[type, frozenset[str]] = {
    list: frozenset({"index", "count", "copy"}),
    tuple: frozenset({"index", "count"}),
    dict: frozenset({"get", "keys", "values", "items", "copy"}),
    set: frozenset({"union", "intersection", "difference", "symmetric_difference", "issubset"})
    | frozenset({"issuperset", "isdisjoint", "copy"}),
    frozenset: frozenset({"union", "intersection", "difference", "symmetric_difference", "issubset"})
    | frozenset({"issuperset", "isdisjoint", "copy"}),
    int: frozenset({"bit_length", "bit_count", "conjugate", "is_integer", "as_integer_ratio"}),
    bool: frozenset({"bit_length", "bit_count", "conjugate", "as_integer_ratio"}),
    float: frozenset({"is_integer", "as_integer_ratio", "hex", "conjugate"}),
    range: frozenset({"index", "count"}),
    LoopContext: frozenset({"cycle", "changed"}),
    Cycler: frozenset({"next", "reset"}),
}
_CONSTRUCTORS = (dict, Namespace, Cycler, Joiner)
_SHALLOW = (list, tuple, dict, set, frozenset, str)


def precheck_str_method(name: str, args: Args, kwargs: Kwargs) -> None:
    """The size check of a growing ``str`` method alone, on an empty text (for the validator)."""
    check = _STR_CHECKS.get(name)
    if check is not None:
        check("", args, kwargs)


def _refuse(what: str) -> FlowSecurityError:
    return FlowSecurityError(f"calling {what} is not allowed in flow templates")


def _str_method(owner: str, name: str, func: Callable[..., Any], env: Any, args: Args, kwargs: Kwargs) -> Any:
    charge((len(owner) + _text_size(args)) // SCAN_CHARS_PER_UNIT)
    if name in ("format", "format_map"):
        if name == "format":
            return str_format(env, owner, args, kwargs)
        if kwargs or len(args) != 1:
            raise TemplateError("format_map() takes exactly one mapping")
        return str_format(env, owner, (), args[0])
    if name == "join":
        return after(func(_str_parts(owner, args[0] if args else ())))
    check = _STR_CHECKS.get(name)
    if check is not None:
        check(owner, args, kwargs)
    elif name not in _STR_READERS:
        raise _refuse(f"str.{name}()")
    return after(func(*args, **kwargs))


def _str_parts(sep: str, items: Any) -> list[str]:
    """The parts of ``sep.join(items)``, refused before joining if the result would be too long."""
    parts: list[str] = []
    total = 0
    for item in counted(items):
        if not isinstance(item, str):
            raise TemplateError(f"join() needs texts, got {type(item).__name__}")
        total += len(item) + (len(sep) if parts else 0)
        if total > MAX_TEXT_CHARS:
            raise too_long(total)
        parts.append(item)
    charge(total // CHARS_PER_UNIT)
    return parts


def call(env: Any, context: Any, obj: Any, args: Args, kwargs: Kwargs) -> Any:
    """Perform ``obj(*args, **kwargs)`` for a template, or refuse it."""
    budget = active()
    budget.charge(CALL_COST + WALK_COST * (len(args) + len(kwargs)))
    if isinstance(obj, Macro | LoopContext):
        if budget.depth >= MAX_CALL_DEPTH:
            raise TemplateLimitError(f"macros or recursive loops nest deeper than {MAX_CALL_DEPTH} calls")
        budget.depth += 1
        try:
            return after(context.call(obj, *args, **kwargs))
        finally:
            budget.depth -= 1
    if isinstance(obj, Undefined | Joiner) or any(obj is f for f in _OWN_CALLABLES):
        return after(context.call(obj, *args, **kwargs))
    if getattr(obj, "ivr_bounded", False):
        return after(context.call(obj, *args, **kwargs))
    kwargs.pop("_loop_vars", None)
    kwargs.pop("_block_vars", None)
    if any(obj is kind for kind in _CONSTRUCTORS):
        charge(sum(len(a) if isinstance(a, _SHALLOW) else 1 for a in args) + len(kwargs))  # a copy
        return obj(*args, **kwargs)
    owner = getattr(obj, "__self__", None)
    name = getattr(obj, "__name__", "?")
    if not isinstance(obj, types.BuiltinMethodType | types.MethodType) or isinstance(owner, type):
        raise _refuse(repr(name))
    if isinstance(owner, str):
        return _str_method(owner, name, obj, env, args, kwargs)
    allowed = next((names for kind, names in _READERS.items() if type(owner) is kind), None)
    if allowed is None or name not in allowed:
        raise _refuse(f"{type(owner).__name__}.{name}()")
    charge(_owner_cost(owner, name) + sum(data_weight(a) for a in args))
    return after(obj(*args, **kwargs))


def _owner_cost(owner: Any, name: str) -> int:
    """What a read-only method walks: lists are scanned or copied, sets combined, dicts only copied."""
    if isinstance(owner, list | tuple | set | frozenset):
        return len(owner)
    if isinstance(owner, dict) and name == "copy":
        return len(owner)
    return 0


def bounded_format(value: Any, env: Any) -> Callable[..., str] | None:
    """The sandbox's ``str.format`` hook: a bounded formatter instead of the plain sandboxed one."""
    if not isinstance(value, types.MethodType | types.BuiltinMethodType) or value.__name__ not in (
        "format",
        "format_map",
    ):
        return None
    owner = value.__self__
    if not isinstance(owner, str):
        return None
    name = value.__name__

    def formatted(*args: Any, **kwargs: Any) -> str:
        return _str_method(owner, name, value, env, args, kwargs)  # type: ignore[no-any-return]

    formatted.ivr_bounded = True  # type: ignore[attr-defined]
    return formatted
