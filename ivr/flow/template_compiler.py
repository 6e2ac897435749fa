"""Jinja's code generator, changed so compiled templates pay for what they do and fold nothing.

Before generating code the tree is checked (nesting depth, no ``{% include %}``/``{% extends %}``/
``{% import %}``/``{% block %}``: flows have no template files) and charges are put in: every loop body,
loop filter (``for x in y if test``) and macro or call-block body starts by charging its own size
(:func:`weight`), so ``{% for %}`` nested in ``{% for %}`` over ``range()`` or a webhook's list runs out of
budget after a few milliseconds however the loops are written. ``~`` concatenation, comparisons and slices
are routed through the size-checked operations of :mod:`ivr.flow.template_ops`. The environment turns
Jinja's compile-time optimizer off, and its finalize hook takes the context, so constants such as
``'x' | center(10**9)`` are never evaluated while compiling (which is what ``ivr validate`` does).
"""

from __future__ import annotations

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame

from ivr.flow.template_budget import CHARS_PER_UNIT, NODE_COST

MAX_NESTING = 40
"""Deepest template syntax tree (brackets, operators, filters and tags nested in each other)."""
_UNSUPPORTED: dict[type[nodes.Node], str] = {
    nodes.Extends: "{% extends %}",
    nodes.Include: "{% include %}",
    nodes.Import: "{% import %}",
    nodes.FromImport: "{% from ... import %}",
    nodes.Block: "{% block %}",
}


_CHARGE = "ivr_charge"


def charge_node(units: int, lineno: int) -> nodes.Call:
    """``environment.ivr_charge(units)``: charges the active budget and evaluates to True, so it can
    prefix a loop's test. (Jinja forbids new node types, so this is a call of an environment attribute,
    which templates cannot write themselves.)"""
    return nodes.Call(
        nodes.EnvironmentAttribute(_CHARGE, lineno=lineno),
        [nodes.Const(units, lineno=lineno)],
        [],
        None,
        None,
        lineno=lineno,
    )


def weight(body: list[nodes.Node] | nodes.Node) -> int:
    """Units one run of ``body`` costs at least: every node, and literal text by its length."""
    todo: list[nodes.Node] = list(body) if isinstance(body, list) else [body]
    units = NODE_COST  # entering the body (one loop iteration, one macro call) is work too
    while todo:
        node = todo.pop()
        units += NODE_COST
        if isinstance(node, nodes.TemplateData):
            units += len(node.data) // CHARS_PER_UNIT
        elif isinstance(node, nodes.Const) and isinstance(node.value, str):
            units += len(node.value) // CHARS_PER_UNIT
        todo.extend(node.iter_child_nodes())
    return units


def nesting(tree: nodes.Node) -> int:
    """Depth of the syntax tree, found without recursion."""
    deepest = 0
    todo = [(tree, 1)]
    while todo:
        node, depth = todo.pop()
        deepest = max(deepest, depth)
        todo.extend((child, depth + 1) for child in node.iter_child_nodes())
    return deepest


def unsupported(tree: nodes.Node) -> tuple[str, int] | None:
    """The first tag flows do not support, with its line."""
    for kind, tag in _UNSUPPORTED.items():
        found = tree.find(kind)
        if found is not None:
            return tag, found.lineno
    return None


def _charge_stmt(body: list[nodes.Node], lineno: int) -> nodes.ExprStmt:
    return nodes.ExprStmt(charge_node(weight(body), lineno), lineno=lineno)


def add_charges(tree: nodes.Template) -> None:
    """Make loop bodies, loop tests and macro bodies charge their weight each time they run."""
    for loop in tree.find_all(nodes.For):
        loop.body.insert(0, _charge_stmt(loop.body, loop.lineno))
        if loop.test is not None:
            loop.test = nodes.And(charge_node(weight(loop.test), loop.lineno), loop.test, lineno=loop.lineno)
    for macro in tree.find_all((nodes.Macro, nodes.CallBlock)):
        assert isinstance(macro, nodes.Macro | nodes.CallBlock)
        macro.body.insert(0, _charge_stmt(macro.body, macro.lineno))
    tree.body.insert(0, _charge_stmt(tree.body, tree.lineno))


class FlowCodeGenerator(CodeGenerator):
    """Jinja's code generator with the checks and routes described in the module docstring."""

    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        depth = nesting(node)
        if depth > MAX_NESTING:
            self.fail(f"the template is nested too deeply ({depth} levels; the limit is {MAX_NESTING})", 1)
        found = unsupported(node)
        if found is not None:
            self.fail(f"{found[0]} is not supported in flow templates", found[1])
        add_charges(node)
        super().visit_Template(node, frame)

    def visit_Call(self, node: nodes.Call, frame: Frame, forward_caller: bool = False) -> None:
        target = node.node
        if isinstance(target, nodes.EnvironmentAttribute) and target.name == _CHARGE:
            units = node.args[0]
            assert isinstance(units, nodes.Const)
            self.write(f"environment.{_CHARGE}({int(units.value)})")
            return
        super().visit_Call(node, frame, forward_caller=forward_caller)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.ivr_concat(context, (")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")

    def visit_Compare(self, node: nodes.Compare, frame: Frame) -> None:
        self.write("environment.ivr_compare(")
        self.visit(node.expr, frame)
        for op in node.ops:
            self.write(f", {op.op!r}, ")
            self.visit(op.expr, frame)
        self.write(")")

    def visit_Getitem(self, node: nodes.Getitem, frame: Frame) -> None:
        if not isinstance(node.arg, nodes.Slice):
            super().visit_Getitem(node, frame)
            return
        self.write("environment.ivr_slice(")
        self.visit(node.node, frame)
        for part in (node.arg.start, node.arg.stop, node.arg.step):
            self.write(", ")
            if part is None:
                self.write("None")
            else:
                self.visit(part, frame)
        self.write(")")
