"""The work budget and size limits every template evaluation runs under.

Templates run on the event loop that also paces every other call's audio, so a hostile or careless
template may cost only a few milliseconds and a few megabytes before it is stopped. The bound is
deterministic (counted work, not a timer): the compiler (:mod:`ivr.flow.template_compiler`) makes loop
bodies, loop tests and macro bodies charge their size each time they run, and every operation that can
make something big or walk something big (strings, lists, big integers, comparisons of containers,
``str()`` of a mapping, filters, method calls) charges its size here *before* doing it and refuses when
the result would pass a limit. One :class:`Budget` covers everything rendered while handling one engine
event; running out is a :class:`TemplateLimitError`, which the engine handles like any template error.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import ItemsView, Iterable, Iterator, KeysView, ValuesView
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, cast

from jinja2.runtime import Undefined
from jinja2.utils import Namespace

MAX_TEXT_CHARS = 10_000
"""Longest text a template may make: the rendered output and every string built on the way."""
MAX_ITEMS = 10_000
"""Most items a list, tuple or ``range()`` built by a template may hold."""
MAX_INT_BITS = 4_096
"""Largest integer (in bits, about 1,233 digits) arithmetic may produce."""
MAX_POWER_EXPONENT = 100
MAX_WORK = 200_000
"""Work units per engine event. A unit is about 25 ns of CPU, so the budget is about 5 ms on one core:
a quarter of a frame period, on the loop that also paces every call's audio."""
ERROR_PATH_RESERVE = 20_000
"""Extra units granted once per event after a budget violation, so the error path can still speak."""
MAX_CALL_DEPTH = 20
"""Deepest nesting of macro calls and recursive loops."""
MAX_DATA_DEPTH = 64
"""Deepest nesting of lists/mappings a template may print, compare or walk."""

NODE_COST = 8
"""Units for one template node run once (a name, an operator, one loop iteration...)."""
CALL_COST = 48
"""Units for a call (macro, method, filter, global) on top of its nodes: about a microsecond."""
WALK_COST = 4
"""Units per item when a value is walked in Python (weighed, printed, compared)."""
CHARS_PER_UNIT = 4
"""Characters of text made per unit. This bounds what a template can allocate: about
``MAX_WORK * CHARS_PER_UNIT`` characters in all (800,000), however it is spent."""
SCAN_CHARS_PER_UNIT = 32
"""Characters of existing text read (searched, compared, copied by C code) per unit."""

_CONTAINERS = (list, tuple, dict, set, frozenset, deque, KeysView, ValuesView, ItemsView)


class TemplateError(Exception):
    """A template or expression failed to compile or to evaluate (undefined name, sandbox violation...)."""


class TemplateLimitError(TemplateError):
    """A template passed one of the limits above: too much work, too long a text, too big a number."""


class Budget:
    """Work spent so far by the templates of one engine event, and the call depth."""

    __slots__ = ("depth", "limit", "reserve", "spent")

    def __init__(self, limit: int = MAX_WORK, reserve: int = ERROR_PATH_RESERVE) -> None:
        self.limit = limit
        self.reserve = reserve
        self.spent = 0
        self.depth = 0

    def charge(self, units: int) -> None:
        self.spent += units
        if self.spent > self.limit:
            raise TemplateLimitError(
                f"the template did too much work (over {MAX_WORK:,} units: a loop, a macro or a "
                "filter over a big value ran too long)"
            )

    def begin(self) -> None:
        """Start one evaluation: after a violation, the next one (the error path) gets the reserve once."""
        if self.spent > self.limit and self.reserve:
            self.limit = self.spent + self.reserve
            self.reserve = 0


_ACTIVE: ContextVar[Budget | None] = ContextVar("ivr_template_budget", default=None)


@contextmanager
def template_budget(limit: int = MAX_WORK) -> Iterator[Budget]:
    """One budget for everything rendered inside (the engine opens one per event)."""
    budget = Budget(limit)
    token = _ACTIVE.set(budget)
    try:
        yield budget
    finally:
        _ACTIVE.reset(token)


@contextmanager
def evaluation() -> Iterator[Budget]:
    """The active budget (a fresh one if none is open), started for one evaluation."""
    budget = _ACTIVE.get()
    if budget is not None:
        budget.begin()
        yield budget
        return
    with template_budget() as fresh:
        yield fresh


def active() -> Budget:
    budget = _ACTIVE.get()
    if budget is None:  # pragma: no cover - every entry point opens one
        raise TemplateError("internal error: a template ran outside a budget")
    return budget


def charge(units: int) -> None:
    active().charge(units)


def too_long(chars: int) -> TemplateLimitError:
    return TemplateLimitError(f"a text would be {chars:,} characters long; the limit is {MAX_TEXT_CHARS:,}")


def too_many(items: int) -> TemplateLimitError:
    return TemplateLimitError(f"a list would have {items:,} items; the limit is {MAX_ITEMS:,}")


def need_text(chars: int) -> None:
    """Refuse, before making it, a text of ``chars`` characters; charge for making it."""
    if chars > MAX_TEXT_CHARS:
        raise too_long(chars)
    charge(chars // CHARS_PER_UNIT)


def need_items(items: int) -> None:
    if items > MAX_ITEMS:
        raise too_many(items)
    charge(items)


def need_int_bits(bits: int) -> None:
    if bits > MAX_INT_BITS:
        raise TemplateLimitError(f"a number would have about {bits:,} bits; the limit is {MAX_INT_BITS:,}")


def need_width(width: Any, what: str = "width") -> None:
    """A padding width, precision or count argument that would make a text of that size."""
    if isinstance(width, int) and not isinstance(width, bool) and width > MAX_TEXT_CHARS:
        raise TemplateLimitError(f"a {what} of {width:,} would make a text longer than {MAX_TEXT_CHARS:,}")


def checked(value: Any) -> Any:
    """Refuse a result that passed a limit (the check after operations that grow at most a few times)."""
    if isinstance(value, str):
        if len(value) > MAX_TEXT_CHARS:
            raise too_long(len(value))
    elif isinstance(value, int) and not isinstance(value, bool):
        need_int_bits(value.bit_length())
    return value


_PLAIN = (list, tuple, dict, set, frozenset)


def _children(item: Any) -> Iterable[Any]:
    if isinstance(item, dict):
        return (x for pair in item.items() for x in pair)
    if isinstance(item, Namespace):
        attrs: dict[str, Any] = object.__getattribute__(item, "_Namespace__attrs")
        return _children(attrs)
    return cast(Iterable[Any], item)


def _is_container(item: Any) -> bool:
    return type(item) in _PLAIN or isinstance(item, (_CONTAINERS, Namespace))


def weigh(value: Any, cap: int) -> int:
    """Units to walk ``value`` once (hash, compare or copy it deeply): one per item, text by length.
    Stops as soon as the total passes ``cap``, so weighing something huge costs no more than ``cap``."""
    if isinstance(value, str):
        return 1 + len(value) // SCAN_CHARS_PER_UNIT
    if not _is_container(value):
        return 1
    total = 1
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DATA_DEPTH:
            raise TemplateLimitError(f"a value is nested deeper than {MAX_DATA_DEPTH} levels")
        for child in _children(item):
            kind = type(child)
            if kind is str:
                total += 1 + len(child) // SCAN_CHARS_PER_UNIT
            else:
                total += 1
                if kind in _PLAIN or (kind not in _SCALARS and _is_container(child)):
                    stack.append((child, depth + 1))
            if total > cap:
                return total
    return total


_SCALARS = {int, float, bool, type(None)}


def _remaining() -> int:
    budget = active()
    return max(budget.limit - budget.spent, 0)


def data_weight(value: Any) -> int:
    """Units to walk ``value`` once (:func:`weigh` at :data:`WALK_COST` an item), found by a walk that
    stops where the budget would; callers charge at least this, which pays for the walk."""
    return WALK_COST * weigh(value, _remaining() // WALK_COST)


def smaller_weight(a: Any, b: Any) -> int:
    """About the weight of the lighter of ``a`` and ``b`` (what comparing them walks), plus what finding
    it walked: both are weighed with a cap that grows fourfold until one fits, so the heavier one is
    never walked much further than the lighter."""
    limit = _remaining() // WALK_COST
    cap, walked = 64, 0
    while True:
        cap = max(1, min(cap, (limit - walked) // 2 + 1))
        weight_a, weight_b = weigh(a, cap), weigh(b, cap)
        walked += min(weight_a, cap) + min(weight_b, cap)
        if weight_a <= cap or weight_b <= cap or walked > limit:
            return WALK_COST * walked  # at least twice the lighter weight: pays for the comparison too
        cap *= 4


def _scalar_repr_size(value: Any) -> int:
    if isinstance(value, str):
        return len(value) + 2
    if isinstance(value, bool) or value is None:
        return 5
    if isinstance(value, int):
        return value.bit_length() * 3 // 10 + 2
    if isinstance(value, float):
        return 24
    return 0


def printed_size(value: Any) -> int:
    """An upper estimate of ``len(str(value))`` for data, found (and charged) without building it."""
    if not _is_container(value):
        return _scalar_repr_size(value) or 80  # 80: a Jinja object (macro, loop...) or a range
    budget = active()
    total = 2
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DATA_DEPTH:
            raise TemplateLimitError(f"a value is nested deeper than {MAX_DATA_DEPTH} levels")
        total += 13 if isinstance(item, KeysView | ValuesView | ItemsView | Namespace) else 0
        for child in _children(item):
            budget.charge(WALK_COST)
            size = _scalar_repr_size(child)
            if size:
                total += size + 2
            elif _is_container(child):
                total += 4
                stack.append((child, depth + 1))
            else:
                total += 82
            if total > MAX_TEXT_CHARS:
                raise too_long(total)
    return total


def text(value: Any) -> str:
    """``str(value)`` for printing, refused before it is built if it would be too long."""
    if isinstance(value, str):
        if len(value) > MAX_TEXT_CHARS:
            raise too_long(len(value))
        return value
    if isinstance(value, Undefined):
        return str(value)  # StrictUndefined raises the "undefined value" error
    if isinstance(value, range):
        return str(value)
    size = printed_size(value)
    charge(size // CHARS_PER_UNIT)
    return checked(str(value))  # type: ignore[no-any-return]


def counted(iterable: Iterable[Any], per_item: int = 1) -> Iterator[Any]:
    """Iterate, charging ``per_item`` units for each item (for generators the filters return)."""
    budget = active()
    for item in iterable:
        budget.charge(per_item)
        yield item


def sized(value: Any) -> int | None:
    try:
        return len(value)
    except TypeError:
        return None


def sort_cost(n: int) -> int:
    return n * max(1, int(math.log2(n + 1)))


def is_set(value: Any) -> bool:
    return isinstance(value, AbstractSet) and not isinstance(value, str)
