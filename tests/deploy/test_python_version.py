"""``pip install`` on a Python older than 3.11 stops at once with one clear line (setup.py runs first when
pip builds the project's metadata), instead of backtracking through dependency releases for minutes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SETUP = Path(__file__).parents[2] / "setup.py"


def test_an_old_python_is_refused_with_one_line() -> None:
    code = f"import sys; sys.version_info = (3, 10, 13); sys.version = '3.10.13 (fake)'; exec(open({str(SETUP)!r}).read())"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "asterisk-ivr needs Python 3.11 or newer; this is Python 3.10.13. "
        "Create the venv with a newer Python, e.g.: python3.11 -m venv .venv"
    )


def test_the_check_does_not_stop_a_supported_python() -> None:
    code = (
        "import setuptools; setuptools.setup = lambda **kw: print('setup', [e.name for e in kw['ext_modules']]); "
        f"exec(open({str(SETUP)!r}).read())"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stdout.strip()) == (0, "setup ['ivr.audiosocket._pacer']")


def test_the_native_pacer_is_optional_in_the_build() -> None:
    """No C compiler must not mean no install: the extension is marked optional (the loop paces then)."""
    code = (
        "import setuptools; setuptools.setup = lambda **kw: print([e.optional for e in kw['ext_modules']]); "
        f"exec(open({str(SETUP)!r}).read())"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stdout.strip() == "[True]"
