from __future__ import annotations

import subprocess
import sys

import pytest

from ivr.cli import build_parser

EXPECTED = {
    "run",
    "simulate",
    "test",
    "validate",
    "graph",
    "schema",
    "originate",
    "prerender",
    "calls",
    "bench",
}


def test_every_command_is_registered() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) >= EXPECTED  # type: ignore[arg-type]


def test_console_script_runs() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "ivr", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("ivr ")


def test_validate_dialplan_mode_rejects_transfers(capsys: pytest.CaptureFixture[str]) -> None:
    from pathlib import Path

    from ivr.cli import main

    data = Path(__file__).parents[1] / "call" / "data"
    assert main(["validate", "--mode", "dialplan", str(data / "menu.yaml")]) == 0
    assert main(["validate", str(data / "transfer.yaml")]) == 0
    assert main(["validate", "--mode", "dialplan", str(data / "transfer.yaml")]) == 1
    err = capsys.readouterr().err
    assert (
        "transfer.yaml:15:3: error: steps.to_desk.transfer: transfers are not possible in dialplan-only mode"
        in err
    )
