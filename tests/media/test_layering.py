"""ivr.media sits at the bottom: no transport, call, flow or speech imports, no asyncio, no audioop."""

import ast
from pathlib import Path

import ivr.media

FORBIDDEN = ("ivr.flow", "ivr.call", "ivr.ari", "ivr.speech", "ivr.audiosocket", "asyncio", "audioop")


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_media_imports_stay_in_their_layer():
    files = sorted(Path(ivr.media.__file__).parent.glob("*.py"))
    assert len(files) >= 6
    for path in files:
        bad = {m for m in imported_modules(path) if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)}
        assert not bad, f"{path.name} imports {bad}"
