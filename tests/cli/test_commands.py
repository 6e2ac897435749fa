from __future__ import annotations

import subprocess
import sys

from ivr.cli import build_parser

EXPECTED = {"run", "simulate", "test", "validate", "graph", "schema", "originate", "prerender"}


def test_every_command_is_registered() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) >= EXPECTED  # type: ignore[arg-type]


def test_console_script_runs() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "ivr", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("ivr ")
