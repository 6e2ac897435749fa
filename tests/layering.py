"""One reader of import statements for every layering test (layers depend downwards only)."""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def forbidden_imports(path: Path, forbidden: Iterable[str]) -> set[str]:
    """The modules ``path`` imports that are, or live under, one of ``forbidden``."""
    rules = tuple(forbidden)
    return {m for m in imported_modules(path) if any(m == f or m.startswith(f + ".") for f in rules)}
