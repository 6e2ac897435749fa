"""WebSocket media is a transport: nothing above it, no sibling transport, a pure codec, no frame clock."""

from __future__ import annotations

import ast
from pathlib import Path

import ivr.transport
import ivr.websocket

from ..layering import forbidden_imports, imported_modules

HIGHER = ("ivr.media", "ivr.speech", "ivr.flow", "ivr.call", "ivr.ari", "ivr.sim", "ivr.ops", "ivr.cli")
PACKAGE = Path(ivr.websocket.__file__).parent


def test_websocket_imports_no_higher_layer_and_no_other_transport() -> None:
    files = sorted(PACKAGE.glob("*.py"))
    assert len(files) >= 7
    for path in files:
        bad = forbidden_imports(path, (*HIGHER, "ivr.audiosocket"))
        assert not bad, f"ivr/websocket/{path.name} imports {bad}"


CODEC = ("protocol", "control_table", "control_messages", "control_codec")
"""The wire's modules: they import one another and nothing else of ours."""


def test_the_codec_is_pure() -> None:
    for name in CODEC:
        bad = forbidden_imports(PACKAGE / f"{name}.py", ("asyncio", "aiohttp", "socket", "ivr"))
        assert bad <= {f"ivr.websocket.{n}" for n in CODEC}, f"ivr/websocket/{name}.py imports {bad}"


def test_the_contract_depends_on_nothing_of_ours() -> None:
    ours = {m for m in imported_modules(Path(ivr.transport.__file__)) if m == "ivr" or m.startswith("ivr.")}
    assert not ours


def test_nothing_in_the_transport_sleeps_asterisk_paces_it() -> None:
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr == "sleep":
                raise AssertionError(f"ivr/websocket/{path.name}:{node.lineno} sleeps")
