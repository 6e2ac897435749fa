"""The engine stays pure: no asyncio, sockets, HTTP or provider SDKs, and no runtime packages."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from ..layering import forbidden_imports

FLOW_DIR = Path(__file__).resolve().parents[2] / "ivr" / "flow"
PURE = [
    "engine",
    "model",
    "validate",
    "checks",
    "schema_errors",
    "questions",
    "events",
    "actions",
    "intents",
    "templates",
    "template_budget",
    "template_calls",
    "template_checks",
    "template_compiler",
    "template_filters",
    "template_ops",
    "edges",
    "errors",
    "source",
    "builtins",
    "loader",
    "graph",
    "schema",
    "__init__",
]
FORBIDDEN = (
    "asyncio",
    "aiohttp",
    "socket",
    "openai",
    "ivr.call",
    "ivr.audiosocket",
    "ivr.ari",
    "ivr.media",
    "ivr.speech",
    "ivr.flow.webhook",
    "ivr.flow.llm_matcher",
    "threading",
    "random",
    "time",
)


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_import_nothing_forbidden(module: str) -> None:
    bad = forbidden_imports(FLOW_DIR / f"{module}.py", FORBIDDEN)
    assert not bad, f"{module} imports {bad}"


def test_no_eval_anywhere_in_the_flow_package() -> None:
    for path in FLOW_DIR.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        calls = {
            n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
        }
        assert not calls & {"eval", "exec", "compile"}, path.name


def test_importing_the_engine_pulls_in_no_network_stack() -> None:
    code = (
        "import sys, ivr.flow, ivr.flow.engine; "
        "bad = [m for m in ('aiohttp', 'openai', 'asyncio') if m in sys.modules]; print(bad)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
