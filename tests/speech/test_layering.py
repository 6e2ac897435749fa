"""ivr.speech may use ivr.media, never the call, flow or transport layers; engines import lazily."""

import subprocess
import sys
from pathlib import Path

import ivr.speech

from ..layering import forbidden_imports

FORBIDDEN = ("ivr.flow", "ivr.call", "ivr.ari", "ivr.audiosocket", "ivr.sim", "ivr.cli", "audioop")


def test_speech_imports_stay_in_their_layer():
    files = sorted(Path(ivr.speech.__file__).parent.glob("*.py"))
    assert len(files) >= 8
    for path in files:
        bad = forbidden_imports(path, FORBIDDEN)
        assert not bad, f"{path.name} imports {bad}"


def test_importing_the_package_loads_no_engine_extras():
    code = (
        "import sys, ivr.speech; "
        "print(sorted(m for m in ('faster_whisper', 'piper', 'onnxruntime', 'ctranslate2', 'websockets') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
