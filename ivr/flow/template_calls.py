"""What templates may call, and at what price: filters, tests, methods and globals.

Every Jinja filter and test is wrapped: it is charged for what it walks (items, characters, a sort),
its arguments are checked before it runs where they decide the size of the result (``center``,
``indent``, ``wordwrap``, ``replace``, ``batch``, ``round``, ``tojson``...), values it would print are
printed through the bounded :func:`~ivr.flow.template_budget.text`, and what it returns is checked (texts)
or charged per item as it is consumed (generators). Method calls are an allow-list: the read-only methods
of ``str``, ``list``, ``dict`` and friends, with the growing ones (``center``, ``replace``, ``join``,
``format``...) size-checked; anything else is refused, so a value from a webhook cannot smuggle in a
callable that allocates or loops unchecked.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import partial
from typing import Any, cast

from jinja2.filters import FILTERS, make_attrgetter
from jinja2.runtime import LoopContext, Macro, Undefined
from jinja2.tests import TESTS
from jinja2.utils import (
    Cycler,
    Joiner,
    Namespace,
    _PassArg,
    generate_lorem_ipsum,
    pass_context,
    pass_environment,
    pass_eval_context,
)

from ivr.flow.template_budget import (
    CALL_COST,
    CHARS_PER_UNIT,
    MAX_CALL_DEPTH,
    MAX_ITEMS,
    MAX_POWER_EXPONENT,
    MAX_TEXT_CHARS,
    NODE_COST,
    SCAN_CHARS_PER_UNIT,
    WALK_COST,
    TemplateError,
    TemplateLimitError,
    active,
    charge,
    checked,
    counted,
    data_weight,
    need_text,
    need_width,
    printed_size,
    sized,
    sort_cost,
    text,
    too_long,
)
from ivr.flow.template_ops import binop, compare, printf, str_format

Args = tuple[Any, ...]
Kwargs = dict[str, Any]


class FlowSecurityError(TemplateError):
    """A template tried something flows may not do (call an unknown method, recurse too deeply)."""


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


def _replace(value: Any, old: Any = "", new: Any = "", count: Any = None, **_: Any) -> Any:
    value = _as_text(value)
    old_len, new_len = len(text(old)), len(text(new))
    times = len(value) // old_len + 1 if old_len else len(value) + 1
    if isinstance(count, int) and count >= 0:
        times = min(times, count)
    need_text(len(value) + times * new_len)
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
    _replace(s, args[0] if args else "", args[1] if len(args) > 1 else "", count)


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
