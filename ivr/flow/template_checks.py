"""What ``ivr validate`` can tell about a template without running it.

* Attributes the sandbox refuses at run time: names starting with ``_`` (``''.__class__.__mro__``,
  ``lipsum.__globals__``), Python internals (``mro``, ``gi_frame``...), also as ``x['_y']``,
  ``x | attr('_y')`` or ``'{0.__class__}'.format(x)``.
* Constant blow-ups: a sub-expression that uses no variable (``'x' * 10**9``, ``name | center(10**9)``,
  ``range(10**8)``) goes through the same size checks the runtime uses. Each check predicts the size of a
  result from the sizes of its operands and refuses before building anything, so the validator reports
  ``'x' * 10**9`` at its line and never allocates it; what it does build is no bigger than the limits.
  Nothing else of a template (names, loops, macros) is run, and Jinja's constant folding is off.
* Loops over constant ranges nested so deep that they would use up the work budget whatever their
  bodies do (``range(1000)`` in ``range(1000)``), counted by multiplying, not by running them.
"""

from __future__ import annotations

import re
from typing import Any

from jinja2 import nodes
from jinja2.sandbox import (
    UNSAFE_ASYNC_GENERATOR_ATTRIBUTES,
    UNSAFE_COROUTINE_ATTRIBUTES,
    UNSAFE_GENERATOR_ATTRIBUTES,
)

from ivr.flow import template_calls, template_filters, template_ops
from ivr.flow.template_budget import MAX_WORK, TemplateError, TemplateLimitError, template_budget
from ivr.flow.template_compiler import weight
from ivr.flow.templates import SANDBOX

_INTERNAL = (
    {"mro", "func_globals", "func_code", "f_globals", "f_locals", "f_builtins", "tb_frame"}
    | UNSAFE_GENERATOR_ATTRIBUTES
    | UNSAFE_COROUTINE_ATTRIBUTES
    | UNSAFE_ASYNC_GENERATOR_ATTRIBUTES
)
_FORMAT_FIELD = re.compile(r"\{[^{}]*?(?:\.(_\w*)|\[(_[^\]]*)\])")
_OPERATIONS = (
    nodes.BinExpr,
    nodes.UnaryExpr,
    nodes.Concat,
    nodes.Compare,
    nodes.Filter,
    nodes.Test,
    nodes.Call,
    nodes.Getattr,
    nodes.Getitem,
    nodes.CondExpr,
)
_CONSTANT_KINDS = (
    *_OPERATIONS,
    nodes.Const,
    nodes.List,
    nodes.Tuple,
    nodes.Dict,
    nodes.Pair,
    nodes.Operand,
    nodes.Keyword,
    nodes.Slice,
)


def _unsafe(attr: str) -> bool:
    return attr.startswith("_") or attr in _INTERNAL


def _unsafe_message(attr: str) -> str:
    return (
        f"'{attr}' is not allowed in flow templates: the sandbox refuses attributes starting with _ "
        "and Python internals (at run time this is an error)"
    )


def unsafe_attributes(tree: nodes.Node) -> list[str]:
    """Findings for every attribute the sandbox would refuse, in source order."""
    found: list[tuple[int, str]] = []
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter, nodes.Const)):
        attr: str | None = None
        if isinstance(node, nodes.Getattr) and _unsafe(node.attr):
            attr = node.attr
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            key = node.arg.value
            attr = key if isinstance(key, str) and _unsafe(key) else None
        elif isinstance(node, nodes.Filter) and node.name == "attr" and node.args:
            first = node.args[0]
            key = first.value if isinstance(first, nodes.Const) else None
            attr = key if isinstance(key, str) and _unsafe(key) else None
        elif isinstance(node, nodes.Const) and isinstance(node.value, str) and "{" in node.value:
            match = _FORMAT_FIELD.search(node.value)
            attr = (match.group(1) or match.group(2)) if match else None
        if attr is not None:
            found.append((node.lineno, _unsafe_message(attr)))
    return [message for _, message in sorted(found, key=lambda f: f[0])]


def _assigned_names(tree: nodes.Node) -> set[str]:
    names = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    names |= {m.name for m in tree.find_all(nodes.Macro)}
    return names


def _is_constant(node: nodes.Node, globals_: set[str]) -> bool:
    """True if ``node`` is an expression that reads no variable (only literals and bounded globals)."""
    todo = [node]
    while todo:
        current = todo.pop()
        if isinstance(current, nodes.Name):
            if current.name not in globals_ or current.ctx != "load":
                return False
            continue
        if isinstance(current, nodes.Filter) and current.node is None:
            return False  # a {% filter %} block: its input is the block's output
        if not isinstance(current, _CONSTANT_KINDS):
            return False
        todo.extend(current.iter_child_nodes())
    return True


def _clone(value: Any) -> Any:
    """A copy of a node tree without the environment Jinja attaches to parsed nodes."""
    if isinstance(value, list):
        return [_clone(v) for v in value]
    if not isinstance(value, nodes.Node):
        return value
    copy = object.__new__(type(value))
    for name in (*value.fields, *value.attributes):
        setattr(copy, name, _clone(getattr(value, name, None)))
    return copy


def _run_constant(expr: nodes.Node) -> Any:
    body = [nodes.Assign(nodes.Name("result", "store", lineno=1), _clone(expr), lineno=1)]
    tree = nodes.Template(body, lineno=1)
    tree.set_environment(SANDBOX)
    template = SANDBOX.from_string(tree)
    context = template.new_context({})
    for _ in template.root_render_func(context):
        pass
    return context.vars.get("result")


def constant_blowups(tree: nodes.Node) -> list[str]:
    """Limit violations of the constant sub-expressions, each checked (not built) within one budget."""
    globals_ = set(template_calls.FLOW_GLOBALS) - _assigned_names(tree)
    found: list[tuple[int, str]] = []
    todo: list[nodes.Node] = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, _OPERATIONS) and _is_constant(node, globals_):
            try:
                with template_budget():
                    _run_constant(node)
            except (TemplateLimitError, template_calls.FlowSecurityError) as exc:
                found.append((node.lineno, f"{exc} (this part uses no variable, so it always fails)"))
            except Exception:
                pass
            continue
        todo.extend(node.iter_child_nodes())
    return [message for _, message in sorted(found, key=lambda f: f[0])]


def _constant_args(
    node: nodes.Filter | nodes.Call, globals_: set[str]
) -> tuple[list[Any], dict[str, Any]] | None:
    if node.dyn_args is not None or node.dyn_kwargs is not None:
        return None
    parts = [*node.args, *(k.value for k in node.kwargs)]
    if not all(_is_constant(p, globals_) for p in parts):
        return None
    args = [_run_constant(a) for a in node.args]
    kwargs = {str(k.key): _run_constant(k.value) for k in node.kwargs}
    return args, kwargs


def _argument_check(node: nodes.Node, globals_: set[str]) -> None:
    """Raise the limit error that the constant arguments (or format) of ``node`` cause for any value."""
    if isinstance(node, nodes.Filter) and node.node is not None:
        found = _constant_args(node, globals_)
        if found is not None:
            template_filters.precheck_filter(node.name, "", tuple(found[0]), found[1])
    elif isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr):
        method, receiver = node.node.attr, node.node.node
        if method == "format" and isinstance(receiver, nodes.Const) and isinstance(receiver.value, str):
            template_ops.format_widths(receiver.value, printf_style=False)
            return
        found = _constant_args(node, globals_)
        if found is not None:
            template_calls.precheck_str_method(method, tuple(found[0]), found[1])
    elif (
        isinstance(node, nodes.Mod)
        and isinstance(node.left, nodes.Const)
        and isinstance(node.left.value, str)
    ):
        template_ops.format_widths(node.left.value, printf_style=True)


def argument_blowups(tree: nodes.Node) -> list[str]:
    """Filters, methods and formats whose constant arguments alone pass a limit (``x | center(10**9)``,
    ``x.ljust(10**9)``, ``'%999999999s' % x``), whatever the variable they get."""
    globals_ = set(template_calls.FLOW_GLOBALS) - _assigned_names(tree)
    found: list[tuple[int, str]] = []
    for node in tree.find_all((nodes.Filter, nodes.Call, nodes.Mod)):
        if _is_constant(node, globals_):
            continue  # constant_blowups checks the whole of it
        try:
            with template_budget():
                _argument_check(node, globals_)
        except TemplateLimitError as exc:
            found.append((node.lineno, f"{exc} (whatever the value, so it always fails)"))
        except Exception:
            pass
    return [message for _, message in sorted(found, key=lambda f: f[0])]


def _constant_count(iterable: nodes.Node, globals_: set[str]) -> int | None:
    """How many items a loop over a constant ``range()``, list or text runs, else None."""
    if not _is_constant(iterable, globals_):
        return None
    try:
        with template_budget():
            value = _run_constant(iterable)
        return len(value)
    except (TemplateError, TypeError, ValueError, OverflowError):
        return None


def nested_loops(tree: nodes.Node) -> list[str]:
    """Loops over constants whose nesting alone runs past the work budget."""
    globals_ = set(template_calls.FLOW_GLOBALS) - _assigned_names(tree)
    found: list[str] = []
    todo: list[tuple[nodes.Node, int]] = [(tree, 1)]
    while todo:
        node, runs = todo.pop()
        if isinstance(node, nodes.For):
            count = _constant_count(node.iter, globals_)
            if count is not None:
                total = runs * count
                if total * weight(node.body) > MAX_WORK:
                    found.append(
                        f"loops over constant ranges run their body {total:,} times: more work than a "
                        f"template may do ({MAX_WORK:,} units per event); at run time this is an error"
                    )
                    continue
                todo.extend((child, total) for child in node.body)
                continue
        todo.extend((child, runs) for child in node.iter_child_nodes())
    return found


def static_findings(tree: nodes.Template) -> list[str]:
    """Everything above, for one parsed template or expression."""
    found = [*unsafe_attributes(tree), *constant_blowups(tree), *argument_blowups(tree), *nested_loops(tree)]
    return list(dict.fromkeys(found))  # the same finding twice in one template says nothing new
