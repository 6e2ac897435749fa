"""ivr.speech may use ivr.media, never the call, flow or transport layers; engines import lazily."""

import ast
import subprocess
import sys
from pathlib import Path

import ivr.speech

FORBIDDEN = ("ivr.flow", "ivr.call", "ivr.ari", "ivr.audiosocket", "ivr.sim", "ivr.cli", "audioop")


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_speech_imports_stay_in_their_layer():
    files = sorted(Path(ivr.speech.__file__).parent.glob("*.py"))
    assert len(files) >= 8
    for path in files:
        bad = {m for m in imported_modules(path) if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)}
        assert not bad, f"{path.name} imports {bad}"


def test_importing_the_package_loads_no_engine_extras():
    code = (
        "import sys, ivr.speech; "
        "print(sorted(m for m in ('faster_whisper', 'piper', 'onnxruntime', 'ctranslate2', 'websockets') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
