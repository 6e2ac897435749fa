"""JSON from peers (webhook replies, ARI replies and events) with a bound on nesting depth.

``json.loads`` recurses in C: ten thousand ``[`` raise ``RecursionError``, which is not a ``ValueError``
and so slips past every ``except ValueError`` written for bad JSON; a few hundred levels parse, and then
break later code that walks or re-serialises the value (templates, call records). Here both become one
:class:`JsonLimitError`, a ``ValueError`` with a short reason. Sizes are bounded by the readers (they
stop reading at their limit), so this module only sees text that is already small enough.
"""

from __future__ import annotations

import json
from typing import Any

DEFAULT_MAX_DEPTH = 64
"""Deeper than any real ARI object (about 5) or sensible webhook reply."""


class JsonLimitError(ValueError):
    """The text is JSON nested deeper than allowed."""


def loads_bounded(text: str | bytes, *, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """``json.loads`` that raises ``ValueError`` for bad JSON and :class:`JsonLimitError` when too deep."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise JsonLimitError(f"JSON nested deeper than {max_depth} levels") from None
    if depth_exceeds(value, max_depth):
        raise JsonLimitError(f"JSON nested deeper than {max_depth} levels")
    return value


def depth_exceeds(value: Any, max_depth: int) -> bool:
    """True if ``value`` has lists/dicts nested more than ``max_depth`` levels (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if type(item) is dict else item if type(item) is list else None
        if children is None:
            continue
        if depth > max_depth:
            return True
        stack.extend((child, depth + 1) for child in children if type(child) in (dict, list))
    return False
