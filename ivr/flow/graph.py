"""Flow diagrams for review: Mermaid (renders on GitHub) and Graphviz DOT.

No-input and no-match edges are dotted (blue and orange), error edges thick red, and global intents
hang off one "any question" node instead of cluttering every question.
"""

from __future__ import annotations

from ivr.flow.edges import HANGUP, Edge, all_edges
from ivr.flow.model import Flow

_MERMAID_SHAPES = {
    "say": ('["', '"]'),
    "play": ('["', '"]'),
    "set": ('["', '"]'),
    "goto": ('["', '"]'),
    "ask": ('{{"', '"}}'),
    "branch": ('{"', '"}'),
    "webhook": ('[/"', '"/]'),
    "transfer": ('>"', '"]'),
    "hangup": ('(["', '"])'),
    "return": ('(["', '"])'),
    "subflow": ('[["', '"]]'),
    "record": ('[("', '")]'),
    "language": ('["', '"]'),
}
_DOT_SHAPES = {
    "say": "box",
    "play": "box",
    "set": "box",
    "goto": "box",
    "ask": "hexagon",
    "branch": "diamond",
    "webhook": "parallelogram",
    "transfer": "cds",
    "hangup": "oval",
    "return": "oval",
    "subflow": "box3d",
    "record": "cylinder",
    "language": "box",
}
_COLORS = {"no_input": "#1f77b4", "no_match": "#ff7f0e", "error": "#d62728", "intent": "#7f7f7f"}
_INTENTS_NODE = "__intents"
_HANGUP_NODE = "__hangup"


def _id(name: str) -> str:
    if name == HANGUP:
        return _HANGUP_NODE
    return f"s_{name}"


def _label(flow: Flow, name: str) -> str:
    step = flow.steps[name]
    detail = ""
    if step.kind == "subflow":
        detail = f" {getattr(step, 'subflow', '')}"
    elif step.kind == "play":
        detail = f" {getattr(step, 'play', '')}"
    elif step.kind == "language":
        detail = f" {getattr(step, 'language', '')}"
    elif step.kind == "ask" and getattr(step, "options", None) is not None:
        detail = " options"
    elif step.kind == "ask" and getattr(step, "capture", None) is not None:
        detail = f" {step.capture.type}"  # type: ignore[union-attr]
    return f"{name}\n{step.kind}{detail}"


def _graph_edges(flow: Flow) -> list[Edge]:
    """All edges, with the global intents drawn once from a shared node."""
    edges = [e for e in all_edges(flow) if e.kind != "intent"]
    for iname, intent in flow.intents.items():
        if intent.next is not None:
            edges.append(Edge(_INTENTS_NODE, intent.next, "intent", iname, ("intents", iname), True))
    return edges


def _mermaid_text(text: str) -> str:
    return text.replace('"', "#quot;").replace("|", "#124;").replace("\n", "<br/>")


def to_mermaid(flow: Flow) -> str:
    lines = ["flowchart TD", "  __start((start))"]
    for name in flow.steps:
        left, right = _MERMAID_SHAPES[flow.steps[name].kind]
        lines.append(f"  {_id(name)}{left}{_mermaid_text(_label(flow, name))}{right}")
    edges = _graph_edges(flow)
    if any(e.target == HANGUP for e in edges):
        lines.append(f'  {_HANGUP_NODE}(["hang up (no error step)"])')
    if flow.intents:
        names = ", ".join(flow.intents)
        lines.append(f'  {_INTENTS_NODE}(("any question:<br/>{_mermaid_text(names)}"))')
    lines.append(f"  __start --> {_id(flow.start)}")
    styles: list[str] = []
    for index, edge in enumerate(edges, start=1):
        source = edge.source if edge.source == _INTENTS_NODE else _id(edge.source)
        arrow = {"no_input": "-.->", "no_match": "-.->", "error": "==>", "intent": "-.->"}.get(
            edge.kind, "-->"
        )
        label = f'|"{_mermaid_text(edge.label)}"|' if edge.label else ""
        lines.append(f"  {source} {arrow}{label} {_id(edge.target)}")
        if edge.kind in _COLORS:
            styles.append(f"  linkStyle {index} stroke:{_COLORS[edge.kind]},color:{_COLORS[edge.kind]}")
    if flow.on_error is not None:
        lines.append(f"  classDef errorStep stroke:{_COLORS['error']},stroke-width:2px")
        lines.append(f"  class {_id(flow.on_error)} errorStep")
    return "\n".join(lines + styles) + "\n"


def _dot_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def to_dot(flow: Flow) -> str:
    lines = [
        f'digraph "{_dot_text(flow.name)}" {{',
        "  rankdir=TB;",
        '  node [fontname="Helvetica"];',
        '  edge [fontname="Helvetica", fontsize=10];',
        '  __start [label="start", shape=circle];',
    ]
    for name in flow.steps:
        kind = flow.steps[name].kind
        extra = ', color="#d62728", penwidth=2' if name == flow.on_error else ""
        lines.append(
            f'  {_id(name)} [label="{_dot_text(_label(flow, name))}", shape={_DOT_SHAPES[kind]}{extra}];'
        )
    edges = _graph_edges(flow)
    if any(e.target == HANGUP for e in edges):
        lines.append(f'  {_HANGUP_NODE} [label="hang up (no error step)", shape=oval];')
    if flow.intents:
        lines.append(
            f'  {_INTENTS_NODE} [label="any question:\\n{_dot_text(", ".join(flow.intents))}", '
            "shape=doublecircle];"
        )
    lines.append(f"  __start -> {_id(flow.start)};")
    for edge in edges:
        source = edge.source if edge.source == _INTENTS_NODE else _id(edge.source)
        attrs = [f'label="{_dot_text(edge.label)}"'] if edge.label else []
        if edge.kind in ("no_input", "no_match", "intent"):
            attrs.append("style=dashed")
        if edge.kind == "error":
            attrs.append("style=bold")
        if edge.kind in _COLORS:
            attrs.append(f'color="{_COLORS[edge.kind]}", fontcolor="{_COLORS[edge.kind]}"')
        lines.append(f"  {source} -> {_id(edge.target)}" + (f" [{', '.join(attrs)}]" if attrs else "") + ";")
    lines.append("}")
    return "\n".join(lines) + "\n"
