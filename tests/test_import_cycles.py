"""No two modules of ``ivr`` import each other, directly or around a longer loop.

Two modules that import each other are one module or a missing interface (a Protocol the lower one
declares). Imports under ``TYPE_CHECKING`` and inside functions count too: they are the same dependence.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "ivr"


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _is_module(name: str, modules: dict[str, Path]) -> bool:
    """A Python module of ours, or a compiled one (``from ivr.audiosocket import _pacer``)."""
    if name in modules:
        return True
    package, _, leaf = name.rpartition(".")
    folder = ROOT.parent.joinpath(*package.split("."))
    return (folder / f"{leaf}.c").exists() or any(folder.glob(f"{leaf}.*.so"))


def _dependencies(modules: dict[str, Path]) -> dict[str, set[str]]:
    deps: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.split(".")[0] == "ivr")
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module.split(".")[0] != "ivr":
                    continue
                for alias in node.names:  # ``from ivr.flow import events``: the submodule, not the package
                    sub = f"{node.module}.{alias.name}"
                    found.add(sub if _is_module(sub, modules) else node.module)
        found.discard(name)
        deps[name] = {d for d in found if d in modules}
    return deps


def _cycles(deps: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(deps[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(deps):
        if v not in index:
            visit(v)
    return found


def test_no_module_of_ivr_imports_one_that_imports_it_back() -> None:
    deps = _dependencies(_modules())
    loops = [
        " -> ".join(c) + ": " + "; ".join(f"{m} imports {sorted(deps[m] & set(c))}" for m in c)
        for c in _cycles(deps)
    ]
    assert not loops, "\n".join(loops)


def test_the_cycle_finder_sees_a_loop() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
