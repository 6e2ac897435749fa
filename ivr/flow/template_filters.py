"""Every Jinja filter and test, wrapped so a template pays for what it walks and cannot make it big.

Each filter is charged for what it walks (items, characters, a sort); its arguments are checked before
it runs where they decide the size of the result (``center``, ``indent``, ``wordwrap``, ``replace``,
``batch``, ``round``, ``tojson``...); values it would print are printed through the bounded
:func:`~ivr.flow.template_budget.text`; and what it returns is checked (texts) or charged per item as it is
consumed (generators). ``join``, ``sum`` and ``format`` are reimplemented on the size-checked operations.
Tests that compare or format (``in``, ``eq``..., ``divisibleby``, ``odd``, ``lower``) go through the same
checks. The flow's own filters (``spell``, ``money``, ``last``) live here too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import partial
from typing import Any, cast

from jinja2.filters import FILTERS, make_attrgetter
from jinja2.runtime import Undefined
from jinja2.tests import TESTS
from jinja2.utils import (
    _PassArg,
    pass_context,
    pass_environment,
    pass_eval_context,
)

from ivr.flow.template_budget import (
    CALL_COST,
    CHARS_PER_UNIT,
    MAX_ITEMS,
    MAX_POWER_EXPONENT,
    MAX_TEXT_CHARS,
    NODE_COST,
    SCAN_CHARS_PER_UNIT,
    WALK_COST,
    TemplateError,
    TemplateLimitError,
    charge,
    checked,
    counted,
    need_text,
    need_width,
    printed_size,
    sized,
    sort_cost,
    text,
    too_long,
)
from ivr.flow.template_ops import binop, compare, printf

Args = tuple[Any, ...]
Kwargs = dict[str, Any]


# ---------------------------------------------------------------- the flow's own filters


def spell(value: Any) -> str:
    """``1234`` -> ``1 2 3 4`` so TTS reads account numbers digit by digit."""
    digits = text(value).replace(" ", "")
    need_text(2 * len(digits))
    return " ".join(digits)


def money(value: Any) -> str:
    """``12.5`` -> ``12.50``."""
    try:
        return f"{float(value):.2f}"
    except (TypeError, ValueError) as exc:
        raise TemplateError(f"money filter needs a number, got {type(value).__name__}") from exc


def last(value: Any, count: int = 4) -> str:
    """Last ``count`` characters, e.g. to confirm the end of a card number."""
    return text(value)[-count:]


FLOW_FILTERS: dict[str, Callable[..., Any]] = {"spell": spell, "money": money, "last": last}

# ---------------------------------------------------------------- filter rules (checked before running)


def _as_text(value: Any, factor: int = 1) -> Any:
    """Print ``value`` (bounded) for a text filter and charge ``factor`` units per 32 characters."""
    value = text(value)
    charge(factor * len(value) // SCAN_CHARS_PER_UNIT)
    return value


def _as_items(value: Any, factor: Callable[[int], int] = lambda n: n) -> Any:
    """Charge for walking a collection; an iterator is taken into a list first (charged per item)."""
    if isinstance(value, str | Mapping) or sized(value) is not None:
        charge(factor(sized(value) or 0))
        return value
    if isinstance(value, Undefined):
        return value
    items = list(counted(value))
    charge(factor(len(items)))
    return items


def _center(value: Any, width: Any = 80, **_: Any) -> Any:
    need_width(width)
    value = _as_text(value)
    need_text(max(len(value), width if isinstance(width, int) else 0))
    return value


def _indent(value: Any, width: Any = 4, *_: Any, **__: Any) -> Any:
    need_width(width)
    value = _as_text(value)
    pad = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
    need_text(len(value) + (value.count("\n") + 2) * pad)
    return value


def _wordwrap(
    value: Any, width: Any = 79, break_long_words: Any = True, wrapstring: Any = None, *_: Any, **__: Any
) -> Any:
    value = _as_text(value, factor=6 * SCAN_CHARS_PER_UNIT)  # textwrap: Python work per word
    sep = len(text(wrapstring)) if wrapstring is not None else 1
    step = width if isinstance(width, int) and width > 0 else 1
    lines = len(value) // step + value.count("\n") + 1
    charge(CALL_COST * lines)  # and per line
    need_text(len(value) + lines * sep)
    return value


def replace_size(value: str, old: Any, new: Any, count: Any) -> None:
    """Refuse ``value.replace(old, new, count)`` if its result could pass the text limit."""
    old_len, new_len = len(text(old)), len(text(new))
    times = len(value) // old_len + 1 if old_len else len(value) + 1
    if isinstance(count, int) and count >= 0:
        times = min(times, count)
    need_text(len(value) + times * new_len)


def _replace(value: Any, old: Any = "", new: Any = "", count: Any = None, **_: Any) -> Any:
    value = _as_text(value)
    replace_size(value, old, new, count)
    return value


def _truncate(
    value: Any, length: Any = 255, killwords: Any = False, end: Any = "...", *_: Any, **__: Any
) -> Any:
    need_text(len(text(end)))
    return _as_text(value)


def _batch(value: Any, linecount: Any = 1, *_: Any, **__: Any) -> Any:
    if isinstance(linecount, int) and linecount > MAX_ITEMS:
        raise TemplateLimitError(f"batch({linecount:,}) would make lists longer than {MAX_ITEMS:,}")
    return _as_items(value, lambda n: WALK_COST * n)


def _slice(value: Any, slices: Any = 1, *_: Any, **__: Any) -> Any:
    if isinstance(slices, int) and slices > MAX_ITEMS:
        raise TemplateLimitError(f"slice({slices:,}) would make more than {MAX_ITEMS:,} lists")
    return _as_items(value)


def _round(value: Any, precision: Any = 0, *_: Any, **__: Any) -> Any:
    if isinstance(precision, int) and abs(precision) > MAX_POWER_EXPONENT:
        raise TemplateLimitError(
            f"a precision of {precision} is too large (the limit is {MAX_POWER_EXPONENT})"
        )
    return value


def _tojson(value: Any, indent: Any = None, **_: Any) -> Any:
    if isinstance(indent, int) and indent > 16:
        raise TemplateLimitError(f"an indent of {indent} is too large (the limit is 16)")
    size = printed_size(value)
    need_text(size * (1 + (indent if isinstance(indent, int) else 0)))
    charge(2 * size)  # json.dumps: a few units per character
    return value


def _printed(value: Any, *_: Any, **__: Any) -> Any:
    size = printed_size(value)
    need_text(size)
    charge(12 * size)  # pprint is Python code: many units per character
    return value


def _xmlattr(value: Any, *_: Any, **__: Any) -> Any:
    if not isinstance(value, Mapping):
        return value
    charge(CALL_COST * len(value))  # escaping and quoting each pair in Python
    return {text(k): v if v is None or isinstance(v, Undefined) else text(v) for k, v in value.items()}


def _urlencode(value: Any, *_: Any, **__: Any) -> Any:
    if isinstance(value, str) or not isinstance(value, Iterable):
        return _as_text(value)
    pairs = value.items() if isinstance(value, Mapping) else counted(value)
    out = [(text(k), text(v)) for k, v in pairs]
    need_text(sum(len(k) + len(v) for k, v in out))
    charge(CALL_COST * len(out))  # quoting each pair in Python
    return out


def _value_only(rule: Callable[[Any], Any]) -> Callable[..., Any]:
    return lambda value, *_, **__: rule(value)


_SORTS = {"sort", "unique", "dictsort", "groupby", "min", "max"}
_LAZY = {"map", "select", "reject", "selectattr", "rejectattr"}
_WALKS = {"list", "reverse", "items", "random", "first"} | _LAZY
_TEXTS = {"capitalize", "lower", "upper", "title", "trim", "striptags", "wordcount", "e", "escape"}
_TEXTS |= {"forceescape", "safe", "string"}
_SLOW_TEXTS = {"urlize": 320, "title": 160, "striptags": 128, "wordcount": 64}


def _sort_units(n: int) -> int:
    return 2 * sort_cost(n)  # comparisons in C, keys and attributes looked up in Python


_PRE: dict[str, Callable[..., Any]] = {
    "center": _center,
    "indent": _indent,
    "wordwrap": _wordwrap,
    "replace": _replace,
    "truncate": _truncate,
    "batch": _batch,
    "slice": _slice,
    "round": _round,
    "tojson": _tojson,
    "pprint": _printed,
    "xmlattr": _xmlattr,
    "urlencode": _urlencode,
    **{name: _value_only(_as_text) for name in _TEXTS},
    # regular expressions and Python loops over the text: units per 32 characters, measured
    **{name: _value_only(partial(_as_text, factor=f)) for name, f in _SLOW_TEXTS.items()},
    **{name: _value_only(partial(_as_items, factor=_sort_units)) for name in _SORTS},
    **{name: _value_only(_as_items) for name in _WALKS},
}


def precheck_filter(name: str, value: Any, args: Args, kwargs: Kwargs) -> None:
    """Run a filter's argument checks alone (the validator: ``x | center(10**9)`` fails for any x)."""
    rule = _PRE.get(name)
    if rule is not None and name not in _SORTS | _WALKS | _TEXTS | set(_SLOW_TEXTS):
        rule(value, *args, **kwargs)


def after(result: Any, per_item: int = NODE_COST) -> Any:
    """Check a result that may be a text (size), a number (bits) or a generator (charged per item)."""
    if isinstance(result, str):
        charge(len(result) // CHARS_PER_UNIT)
        return checked(result)
    if isinstance(result, Undefined):
        return result
    if isinstance(result, Iterator):
        return counted(result, per_item)
    if isinstance(result, list):
        charge(len(result))
    return checked(result)


@pass_eval_context
def _join(eval_ctx: Any, value: Any, d: Any = "", attribute: Any = None) -> Any:
    items: Iterable[Any] = value
    if attribute is not None:
        items = map(make_attrgetter(eval_ctx.environment, attribute), value)
    sep = text(d)
    parts: list[str] = []
    total = 0
    for item in counted(items, 2 * WALK_COST):
        part = text(item)
        total += len(part) + (len(sep) if parts else 0)
        if total > MAX_TEXT_CHARS:
            raise too_long(total)
        parts.append(part)
    charge(total // CHARS_PER_UNIT)
    return FILTERS["join"](eval_ctx, parts, sep)


@pass_environment
def _sum(environment: Any, iterable: Any, attribute: Any = None, start: Any = 0) -> Any:
    items: Iterable[Any] = iterable
    if attribute is not None:
        items = map(make_attrgetter(environment, attribute), iterable)
    total = start
    for item in counted(items, 4 * NODE_COST):
        total = binop("+", total, item)
    return total


def _format(value: Any, *args: Any, **kwargs: Any) -> Any:
    if args and kwargs:
        raise TemplateError("format filter: use positional or keyword arguments, not both")
    return printf(text(value), kwargs or args)


_OWN: dict[str, Callable[..., Any]] = {"join": _join, "sum": _sum, "format": _format}


def _filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    impl = _OWN.get(name, func)
    pass_arg = _PassArg.from_obj(impl)
    per_item = CALL_COST if name in _LAZY else NODE_COST  # map('upper') calls a filter per item
    rule = _PRE.get(name)

    @pass_context
    def run(context: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        charge(CALL_COST)
        if rule is not None:
            value = rule(value, *args, **kwargs)
        if pass_arg is _PassArg.context:
            result = impl(context, value, *args, **kwargs)
        elif pass_arg is _PassArg.eval_context:
            result = impl(context.eval_ctx, value, *args, **kwargs)
        elif pass_arg is _PassArg.environment:
            result = impl(context.environment, value, *args, **kwargs)
        else:
            result = impl(value, *args, **kwargs)
        return after(result, per_item)

    run.__name__ = run.__qualname__ = f"filter_{name}"
    return run


def flow_filters() -> dict[str, Callable[..., Any]]:
    """Every Jinja filter plus the flow's own, each wrapped with its checks."""
    return {name: _filter(name, func) for name, func in {**FILTERS, **FLOW_FILTERS}.items()}


# ---------------------------------------------------------------- tests


def _odd(value: Any) -> bool:
    return bool(binop("%", value, 2) == 1)


def _even(value: Any) -> bool:
    return bool(binop("%", value, 2) == 0)


def _divisibleby(value: Any, num: Any) -> bool:
    return binop("%", value, num) == 0  # type: ignore[no-any-return]


def _case_test(name: str) -> Callable[[Any], bool]:
    def run(value: Any) -> bool:
        return getattr(_as_text(value), f"is{name}")()  # type: ignore[no-any-return]

    return run


_COMPARE_TESTS = {
    "in": "in",
    "==": "eq",
    "eq": "eq",
    "equalto": "eq",
    "!=": "ne",
    "ne": "ne",
    ">": "gt",
    "gt": "gt",
    "greaterthan": "gt",
    ">=": "gteq",
    "ge": "gteq",
    "<": "lt",
    "lt": "lt",
    "lessthan": "lt",
    "<=": "lteq",
    "le": "lteq",
}


def _test(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    if name in _COMPARE_TESTS:
        op = _COMPARE_TESTS[name]
        return lambda value, other: compare(value, op, other)
    own: dict[str, Callable[..., Any]] = {
        "odd": _odd,
        "even": _even,
        "divisibleby": _divisibleby,
        "lower": _case_test("lower"),
        "upper": _case_test("upper"),
    }
    return own.get(name, func)  # the rest look at a value's type, or at a filter or test name


def flow_tests() -> dict[str, Callable[..., Any]]:
    tests = cast(dict[str, Callable[..., Any]], TESTS)
    return {name: _test(name, func) for name, func in tests.items()}
