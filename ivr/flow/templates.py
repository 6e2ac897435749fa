"""Sandboxed templates (prompts, urls, bodies) and expressions (``branch`` conditions, ``set`` values).

Everything goes through Jinja2's ``ImmutableSandboxedEnvironment``: no Python ``eval``, no access to
``_``-attributes, no mutation of lists or dicts, capped ``range`` and guarded ``**``/``*`` so a flow file
cannot hang or escape the process. Conditions are compiled with ``compile_expression`` so ``balance > 100``
yields a real boolean; a rendered string "False" would be truthy. Undefined names raise (``StrictUndefined``)
instead of speaking an empty gap, and the engine follows the flow's error path.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_OUTPUT_CHARS = 10_000
MAX_POWER_EXPONENT = 100
MAX_REPEAT_ITEMS = 10_000
_WHOLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\}\}).)*)\}\}\s*$", re.DOTALL)


class TemplateError(Exception):
    """A template or expression failed to compile or to evaluate (undefined name, sandbox violation...)."""


def _spell(value: Any) -> str:
    """``1234`` -> ``1 2 3 4`` so TTS reads account numbers digit by digit."""
    return " ".join(str(value).replace(" ", ""))


def _money(value: Any) -> str:
    """``12.5`` -> ``12.50``."""
    try:
        return f"{float(value):.2f}"
    except (TypeError, ValueError) as exc:
        raise TemplateError(f"money filter needs a number, got {value!r}") from exc


def _last(value: Any, count: int = 4) -> str:
    """Last ``count`` characters, e.g. to confirm the end of a card number."""
    return str(value)[-count:]


class FlowSandbox(ImmutableSandboxedEnvironment):
    """The single Jinja2 environment used for every flow string."""

    intercepted_binops = frozenset({"**", "*"})

    def __init__(self) -> None:
        super().__init__(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False)
        self.filters.update({"spell": _spell, "money": _money, "last": _last})
        from ivr.flow.spoken import template_filters  # read-back in the call's language: say_date ...

        self.filters.update(template_filters())

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            if isinstance(right, int | float) and abs(right) > MAX_POWER_EXPONENT:
                raise SecurityError(f"exponent {right} is too large")
            return left**right
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(times, int)
                    and len(seq) * times > MAX_REPEAT_ITEMS
                ):
                    raise SecurityError("repetition result is too large")
            return left * right
        return super().call_binop(context, operator, left, right)


SANDBOX = FlowSandbox()


@lru_cache(maxsize=4096)
def compile_template(source: str) -> jinja2.Template:
    try:
        return SANDBOX.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error: {exc.message}") from exc


@lru_cache(maxsize=4096)
def compile_expression(source: str) -> Callable[..., Any]:
    try:
        return SANDBOX.compile_expression(source, undefined_to_none=False)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"expression syntax error in {source!r}: {exc.message}") from exc


def _explain(exc: Exception) -> str:
    if isinstance(exc, jinja2.UndefinedError):
        return f"undefined value: {exc.message}"
    if isinstance(exc, SecurityError):
        return f"not allowed in flows: {exc}"
    return f"{type(exc).__name__}: {exc}"


def render(source: str, context: Mapping[str, Any]) -> str:
    """Render a template string; raise :class:`TemplateError` on any failure."""
    template = compile_template(source)
    try:
        text = template.render(dict(context))
    except TemplateError:
        raise
    except Exception as exc:  # Jinja raises many types; all mean "this template cannot be used"
        raise TemplateError(_explain(exc)) from exc
    if len(text) > MAX_OUTPUT_CHARS:
        raise TemplateError(f"rendered text is longer than {MAX_OUTPUT_CHARS} characters")
    return text


def evaluate(source: str, context: Mapping[str, Any]) -> Any:
    """Evaluate an expression (``balance > 100``) to a Python value."""
    expr = compile_expression(source)
    try:
        result = expr(**dict(context))
    except TemplateError:
        raise
    except Exception as exc:
        raise TemplateError(_explain(exc)) from exc
    if isinstance(result, jinja2.Undefined):
        raise TemplateError(f"undefined value in {source!r}")
    return result


def whole_expression(value: str) -> str | None:
    """The inner expression of a string that is exactly ``{{ expr }}``, else None."""
    match = _WHOLE_EXPRESSION.match(value)
    return match.group("expr").strip() if match else None


def is_template(value: str) -> bool:
    return "{{" in value or "{%" in value


def resolve_value(value: Any, context: Mapping[str, Any]) -> Any:
    """Resolve a ``set``/``with``/``json`` value: ``"{{ expr }}"`` keeps its type, other strings render."""
    if isinstance(value, str):
        expr = whole_expression(value)
        if expr is not None:
            return evaluate(expr, context)
        return render(value, context) if is_template(value) else value
    if isinstance(value, dict):
        return {k: resolve_value(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_value(v, context) for v in value]
    return value


def parse_source(source: str, *, expression: bool = False) -> nodes.Template:
    """Parse to a Jinja AST (for the validator); raise :class:`TemplateError` on syntax errors."""
    text = "{{ " + source + " }}" if expression else source
    try:
        compile_expression(source) if expression else compile_template(source)
        return SANDBOX.parse(text)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"syntax error: {exc.message}") from exc


def referenced_names(tree: nodes.Template) -> set[str]:
    """Top-level names a template reads and does not define itself."""
    from jinja2 import meta

    return set(meta.find_undeclared_variables(tree))


def attribute_uses(tree: nodes.Template, root: str) -> set[str]:
    """``X`` for every ``root.X`` or ``root['X']`` in the template (e.g. secrets under ``env``)."""
    found: set[str] = set()
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        if isinstance(node, nodes.Getattr):
            if isinstance(node.node, nodes.Name) and node.node.name == root:
                found.add(node.attr)
        elif isinstance(node, nodes.Getitem) and isinstance(node.node, nodes.Name) and node.node.name == root:
            found.add(str(node.arg.value) if isinstance(node.arg, nodes.Const) else "*")
    return found


def strings_in(value: Any) -> list[tuple[tuple[str | int, ...], str]]:
    """Every string inside a nested value with its relative key path (for validating bodies and set)."""
    out: list[tuple[tuple[str | int, ...], str]] = []
    if isinstance(value, str):
        out.append(((), value))
    elif isinstance(value, dict):
        for k, v in value.items():
            out.extend(((k, *p), s) for p, s in strings_in(v))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.extend(((i, *p), s) for p, s in strings_in(v))
    return out
