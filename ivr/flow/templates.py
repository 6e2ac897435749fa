"""Sandboxed templates (prompts, urls, bodies) and expressions (``branch`` conditions, ``set`` values).

Everything goes through one Jinja2 ``ImmutableSandboxedEnvironment``: no Python ``eval``, no access to
``_``-attributes, no mutation of lists or dicts. On top of the sandbox, evaluation is bounded: a work
budget and size limits (:mod:`ivr.flow.template_budget`) charged by the compiled code
(:mod:`ivr.flow.template_compiler`), by the operators (:mod:`ivr.flow.template_ops`) and by filters and
method calls (:mod:`ivr.flow.template_calls`), so a template costs at most a few milliseconds and a few
megabytes whatever it does. Conditions are compiled as expressions so ``balance > 100`` yields a real
boolean; a rendered string "False" would be truthy. Undefined names raise (``StrictUndefined``) instead of
speaking an empty gap, and the engine follows the flow's error path.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import pass_context

from ivr.flow import template_calls, template_filters, template_ops
from ivr.flow.template_budget import (
    CHARS_PER_UNIT,
    MAX_TEXT_CHARS,
    TemplateError,
    TemplateLimitError,
    charge,
    checked,
    evaluation,
    template_budget,
    text,
)
from ivr.flow.template_compiler import FlowCodeGenerator

__all__ = [
    "MAX_OUTPUT_CHARS",
    "MAX_SOURCE_CHARS",
    "SANDBOX",
    "TemplateError",
    "TemplateLimitError",
    "evaluate",
    "render",
    "resolve_value",
    "template_budget",
]

MAX_OUTPUT_CHARS = MAX_TEXT_CHARS
MAX_SOURCE_CHARS = 20_000
"""Longest template or expression a flow may contain."""
_WHOLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\}\}).)*)\}\}\s*$", re.DOTALL)


@pass_context
def _finalize(context: Any, value: Any) -> str:
    """Every ``{{ value }}`` printed through the bounded ``str()``; taking the context keeps Jinja from
    evaluating constant output at compile time."""
    printed = text(value)
    charge(len(printed) // CHARS_PER_UNIT)
    return printed


class FlowSandbox(ImmutableSandboxedEnvironment):
    """The single Jinja2 environment used for every flow string."""

    code_generator_class = FlowCodeGenerator
    intercepted_binops = frozenset(template_ops.BINOPS)

    def __init__(self) -> None:
        super().__init__(
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            keep_trailing_newline=False,
            optimized=False,  # the optimizer folds constants at compile time: 'x' * 10**9 while validating
            finalize=_finalize,
        )
        self.globals.clear()
        self.globals.update(template_calls.FLOW_GLOBALS)
        self.filters.clear()
        self.filters.update(template_filters.flow_filters())
        self.tests.clear()
        self.tests.update(template_filters.flow_tests())
        from ivr.flow.spoken import template_filters as read_back  # say_date ... in the call's language

        self.filters.update(read_back())

    # hooks called by the generated code ---------------------------------------------------------

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        return template_ops.binop(operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if not __self.is_safe_callable(__obj):
            raise SecurityError(f"{__obj!r} is not safely callable")
        return template_calls.call(__self, __context, __obj, args, kwargs)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        return template_calls.bounded_format(value, self)

    @staticmethod
    def ivr_charge(units: int) -> bool:
        charge(units)
        return True

    @staticmethod
    def ivr_concat(context: Any, values: tuple[Any, ...]) -> str:
        return template_ops.concat(values, bool(context.eval_ctx.autoescape))

    @staticmethod
    def ivr_compare(*chain: Any) -> Any:
        return template_ops.compare(*chain)

    @staticmethod
    def ivr_slice(value: Any, start: Any, stop: Any, step: Any) -> Any:
        return template_ops.slice_of(value, start, stop, step)


SANDBOX = FlowSandbox()


def _syntax(kind: str, exc: jinja2.TemplateSyntaxError) -> TemplateError:
    return TemplateError(f"{kind} syntax error: {exc.message}")


def _check_source(source: str) -> None:
    if len(source) > MAX_SOURCE_CHARS:
        raise TemplateLimitError(
            f"the template is {len(source):,} characters long; the limit is {MAX_SOURCE_CHARS:,}"
        )


@lru_cache(maxsize=4096)
def compile_template(source: str) -> jinja2.Template:
    _check_source(source)
    try:
        return SANDBOX.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise _syntax("template", exc) from exc
    except RecursionError:
        raise TemplateLimitError("the template is nested too deeply") from None


def _expression_tree(source: str) -> nodes.Expr:
    parser = Parser(SANDBOX, source, state="variable")
    expr = parser.parse_expression()
    if not parser.stream.eos:
        raise jinja2.TemplateSyntaxError("chunk after expression", parser.stream.current.lineno, None, None)
    return expr


@lru_cache(maxsize=4096)
def compile_expression(source: str) -> jinja2.Template:
    """A template that stores the value of ``source`` in its context as ``result``."""
    _check_source(source)
    try:
        expr = _expression_tree(source)
        expr.set_environment(SANDBOX)
        body = [nodes.Assign(nodes.Name("result", "store"), expr, lineno=1)]
        return SANDBOX.from_string(nodes.Template(body, lineno=1))
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"expression syntax error in {source!r}: {exc.message}") from exc
    except RecursionError:
        raise TemplateLimitError("the expression is nested too deeply") from None


def _explain(exc: Exception) -> str:
    if isinstance(exc, jinja2.UndefinedError):
        return f"undefined value: {exc.message}"
    if isinstance(exc, SecurityError):
        return f"not allowed in flows: {exc}"
    if isinstance(exc, RecursionError):
        return "the template is nested too deeply"
    return f"{type(exc).__name__}: {exc}"


def render(source: str, context: Mapping[str, Any]) -> str:
    """Render a template string; raise :class:`TemplateError` on any failure or limit."""
    template = compile_template(source)
    with evaluation():
        try:
            ctx = template.new_context(dict(context))
            parts: list[str] = []
            total = 0
            for piece in template.root_render_func(ctx):
                total += len(piece)
                if total > MAX_OUTPUT_CHARS:
                    raise TemplateLimitError(f"rendered text is longer than {MAX_OUTPUT_CHARS:,} characters")
                parts.append(piece)
        except TemplateError:
            raise
        except Exception as exc:  # Jinja raises many types; all mean "this template cannot be used"
            raise TemplateError(_explain(exc)) from exc
    return "".join(parts)


def evaluate(source: str, context: Mapping[str, Any]) -> Any:
    """Evaluate an expression (``balance > 100``) to a Python value."""
    template = compile_expression(source)
    with evaluation():
        try:
            ctx = template.new_context(dict(context))
            for _ in template.root_render_func(ctx):
                pass
            result = checked(ctx.vars["result"])
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


@lru_cache(maxsize=4096)
def parse_source(source: str, *, expression: bool = False) -> nodes.Template:
    """Parse to a Jinja AST (for the validator): compiled (without running or folding anything) so
    compile-time errors show, then parsed again; raise :class:`TemplateError` on syntax errors.
    The tree is shared: do not change it."""
    compile_expression(source) if expression else compile_template(source)
    text_ = "{{ " + source + " }}" if expression else source
    try:
        return SANDBOX.parse(text_)
    except jinja2.TemplateSyntaxError as exc:  # pragma: no cover - compiling found it first
        raise TemplateError(f"syntax error: {exc.message}") from exc
    except RecursionError:  # pragma: no cover - compiling found it first
        raise TemplateLimitError("the template is nested too deeply") from None


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
