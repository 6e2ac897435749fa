"""Size-checked operators for templates: ``+ - * / // % **``, ``~``, comparisons, slices, ``%`` and
``str.format`` formatting.

Each predicts the size of its result from the sizes of its operands and refuses (a
:class:`~ivr.flow.template_budget.TemplateLimitError`) before allocating anything too big, so
``'x' * 10**9``, ``10 ** 10 ** 10``, ``'%999999999s' % x`` or ``'{:>999999999}'.format(x)`` cost
microseconds, not a gigabyte.
"""

from __future__ import annotations

import operator
import re
import string
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from jinja2.runtime import markup_join, str_join
from jinja2.sandbox import SandboxedEscapeFormatter, SandboxedFormatter
from markupsafe import Markup

from ivr.flow.template_budget import (
    CALL_COST,
    CHARS_PER_UNIT,
    MAX_POWER_EXPONENT,
    MAX_TEXT_CHARS,
    SCAN_CHARS_PER_UNIT,
    TemplateLimitError,
    charge,
    checked,
    data_weight,
    is_set,
    need_int_bits,
    need_items,
    need_text,
    need_width,
    printed_size,
    sized,
    smaller_weight,
    text,
    too_long,
)

BINOPS: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "//": operator.floordiv,
    "%": operator.mod,
    "**": operator.pow,
}
COMPARISONS: dict[str, Callable[[Any, Any], Any]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "gteq": operator.ge,
    "lt": operator.lt,
    "lteq": operator.le,
    "in": lambda a, b: a in b,
    "notin": lambda a, b: a not in b,
}
_PRINTF = re.compile(
    r"%(?:\((?P<key>[^)]*)\))?[-+ #0]*(?P<width>\*|\d+)?(?:\.(?P<prec>\*|\d+))?[hlL]?(?P<kind>.)", re.DOTALL
)
_FORMAT_SPEC = re.compile(r"^(?:.?[<>=^])?[-+ ]?z?#?0?(?P<width>\d*)[_,]?(?:\.(?P<prec>\d+))?[a-zA-Z%]?$")


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _seq(value: Any) -> bool:
    return isinstance(value, str | list | tuple)


def _need_seq(value: Any, length: int) -> None:
    if isinstance(value, str):
        need_text(length)
    else:
        need_items(length)


def binop(op: str, left: Any, right: Any) -> Any:
    """``left op right`` with its result size checked first."""
    if op == "+":
        if _seq(left) and _seq(right):
            _need_seq(left, len(left) + len(right))
        elif _int(left) and _int(right):
            need_int_bits(max(left.bit_length(), right.bit_length()) + 1)
    elif op == "*":
        for seq, times in ((left, right), (right, left)):
            if _seq(seq) and _int(times):
                _need_seq(seq, len(seq) * max(times, 0))
        if _int(left) and _int(right):
            need_int_bits(left.bit_length() + right.bit_length())
    elif op == "**":
        _check_power(left, right)
    elif op == "%" and isinstance(left, str):
        return printf(left, right)
    elif op == "-" and is_set(left):
        charge(len(left))
    return checked(BINOPS[op](left, right))


def _check_power(base: Any, exponent: Any) -> None:
    if not isinstance(exponent, int | float) or not isinstance(base, int | float):
        return
    if abs(exponent) > MAX_POWER_EXPONENT:
        raise TemplateLimitError(
            f"an exponent of {exponent} is too large (the limit is {MAX_POWER_EXPONENT})"
        )
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
        need_int_bits(base.bit_length() * exponent)


def concat(values: Sequence[Any], autoescape: bool) -> str:
    """``a ~ b ~ c``: every part printed (bounded), the total checked before joining."""
    parts = [text(v) for v in values]
    need_text(sum(len(p) for p in parts))
    return checked(markup_join(parts) if autoescape else str_join(parts))  # type: ignore[no-any-return]


def _containment_cost(needle: Any, haystack: Any) -> int:
    if isinstance(haystack, str):
        return 1 + (len(haystack) + (len(needle) if isinstance(needle, str) else 0)) // SCAN_CHARS_PER_UNIT
    if isinstance(haystack, Mapping) or is_set(haystack):
        return data_weight(needle)
    length = sized(haystack)
    if length is None:
        return 1  # an iterator: each item it yields is charged by whoever made it
    return length * data_weight(needle)


def compare(*chain: Any) -> Any:
    """``a op b op c ...`` (Jinja's chained comparison), each step charged by what it walks."""
    left = chain[0]
    result: Any = True
    for i in range(1, len(chain), 2):
        op, right = chain[i], chain[i + 1]
        if op in ("in", "notin"):
            charge(_containment_cost(left, right))
        elif not isinstance(left, int | float | bool) or not isinstance(right, int | float | bool):
            charge(smaller_weight(left, right))
        result = COMPARISONS[op](left, right)
        if not result:
            return result
        left = right
    return result


def slice_of(value: Any, start: Any, stop: Any, step: Any) -> Any:
    """``value[start:stop:step]``: the copy is charged (and refused if too big) before it is made."""
    cut = slice(start, stop, step)
    length = sized(value)
    if length is not None:
        _need_seq(value, len(range(*cut.indices(length))))
    return value[cut]


def printf(fmt: str, args: Any) -> str:
    """``fmt % args`` with every width and precision, and the whole result, bounded first."""
    positional = list(args) if isinstance(args, tuple) else [args]
    mapping = args if isinstance(args, Mapping) else None
    total = len(fmt)
    index = 0

    def take() -> Any:
        nonlocal index
        value = positional[index] if index < len(positional) else None
        index += 1
        return value

    for match in _PRINTF.finditer(fmt):
        charge(CALL_COST)  # each directive: Python work here and in the % operator
        if match.group("kind") == "%":
            continue
        sizes = []
        for part in ("width", "prec"):
            raw = match.group(part)
            value = take() if raw == "*" else (int(raw) if raw else 0)
            need_width(value, "width" if part == "width" else "precision")
            sizes.append(value if _int(value) else 0)
        key = match.group("key")
        arg = mapping.get(key) if mapping is not None and key is not None else take()
        kind = match.group("kind")
        size = printed_size(arg) if kind in "rsa" else _number_size(arg, kind)
        total += max(sizes[0], size + sizes[1] + (size * 9 if kind == "a" else 0))
        if total > MAX_TEXT_CHARS:
            raise too_long(total)
    need_text(total)
    if mapping is None and not isinstance(args, tuple):
        args = (args,)
    return checked(fmt % args)  # type: ignore[no-any-return]


def format_widths(fmt: str, *, printf_style: bool) -> None:
    """Refuse a ``%`` or ``str.format`` format whose own widths or precisions are too large, whatever it
    formats (for the validator, which knows the format but not the values)."""
    if printf_style:
        for match in _PRINTF.finditer(fmt):
            for part in ("width", "prec"):
                raw = match.group(part)
                if raw and raw != "*":
                    need_width(int(raw), "width" if part == "width" else "precision")
        return
    for _, field, spec, _ in string.Formatter().parse(fmt):
        spec_match = _FORMAT_SPEC.match(spec or "") if field is not None else None
        if spec_match:
            need_width(int(spec_match.group("width") or 0))
            need_width(int(spec_match.group("prec") or 0), "precision")


def _number_size(value: Any, kind: str) -> int:
    if _int(value):
        return int(value.bit_length()) * 3 // 10 + 3
    if isinstance(value, float) and kind in "fF":
        return 320  # 1e308 printed in full
    return 32


class _Bounded:
    """The sandbox's ``str.format`` with widths, precisions and the running length bounded."""

    made = 0

    def format_field(self, value: Any, format_spec: str) -> Any:
        match = _FORMAT_SPEC.match(format_spec)
        width = int(match.group("width") or 0) if match else 0
        prec = int(match.group("prec") or 0) if match else 0
        need_width(width)
        need_width(prec, "precision")
        charge(2 * CALL_COST)  # string.Formatter is Python code: a few microseconds a field
        if not isinstance(value, str | int | float | bool) and value is not None:
            value = text(value)
        size = (
            max(width, printed_size(value) + prec) if not isinstance(value, float) else max(width, 320 + prec)
        )
        self.made += size
        if self.made > MAX_TEXT_CHARS:
            raise too_long(self.made)
        charge(size // CHARS_PER_UNIT)
        return super().format_field(value, format_spec)  # type: ignore[misc]

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        if conversion in ("r", "a"):
            size = printed_size(value) * (10 if conversion == "a" else 1)
            if size > MAX_TEXT_CHARS:
                raise too_long(size)
        elif conversion == "s":
            return text(value)
        return super().convert_field(value, conversion)  # type: ignore[misc]


class BoundedFormatter(_Bounded, SandboxedFormatter):
    pass


class BoundedEscapeFormatter(_Bounded, SandboxedEscapeFormatter):
    pass


def str_format(env: Any, fmt: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
    """``fmt.format(*args, **kwargs)`` through the bounded sandbox formatter."""
    need_text(len(fmt))
    if isinstance(fmt, Markup):
        formatter: SandboxedFormatter = BoundedEscapeFormatter(env, escape=fmt.escape)
    else:
        formatter = BoundedFormatter(env)
    return checked(type(fmt)(formatter.vformat(fmt, args, kwargs)))  # type: ignore[no-any-return]
