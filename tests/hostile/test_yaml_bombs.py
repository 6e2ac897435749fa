"""Hostile flow files: each is refused fast, with one line naming the file, the line where there is one,
the limit and its value, by ``ivr validate`` and when ``ivr run`` loads its flows; nothing hangs, nothing
raises a traceback, and the work done is counted (trace steps and peak memory), not timed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import pytest

from ivr.cli import main
from ivr.flow.errors import FlowError
from ivr.flow.loader import load_library
from ivr.flow.source import MAX_ALIASES, MAX_DEPTH, MAX_FILE_BYTES, MAX_STEPS, MAX_VALUES
from ivr.flow.validate import validate_file
from tests.hostile.test_template_bombs import Meter, metered

MAX_CALLS = 2_500_000
"""Python calls a refused file may cost (PyYAML's parser calls a function per character, so calls are
its work). The most a file can make it do is compose :data:`MAX_VALUES` values (about a second on one
core: the "60,000 tiny values" and "merge-key bomb" cases, bounded by the loader's own count of values
and not traced, because tracing them takes ten times longer)."""
MAX_PEAK_BYTES = 60_000_000
UNMETERED = {"60,000 tiny values", "merge-key bomb"}


def _billion_laughs() -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]
    return "name: t\nstart: s\n" + "\n".join(lines) + "\nsteps:\n  s:\n    hangup:\n"


def _merge_bomb() -> str:
    keys = ", ".join(f"k{i}: v" for i in range(1_000))
    merges = "".join(f"m{i}: {{<<: *b}}\n" for i in range(60))
    return f"name: t\nb: &b {{{keys}}}\n{merges}"


# (id, file contents, (line, column) or None, what the error says)
BOMBS: list[tuple[str, Callable[[], str | bytes], tuple[int, int] | None, str]] = [
    ("alias bomb", _billion_laughs, (3, 28), f"aliases expand to more than {MAX_VALUES:,} values"),
    ("merge-key bomb", _merge_bomb, None, f"aliases expand to more than {MAX_VALUES:,} values"),
    (
        "too many aliases",
        lambda: "a: &a x\nb: [" + ", ".join(["*a"] * 101) + "]\n",
        (2, 405),
        f"the limit is {MAX_ALIASES}",
    ),
    ("recursive alias", lambda: "name: t\nvars:\n  x: &r [1, *r]\n", (3, 6), "recursive alias"),
    (
        "10^4 nested lists",
        lambda: "name: t\nvars:\n  x: " + "[" * 10_000 + "]" * 10_000 + "\n",
        (3, 68),
        f"deeper than {MAX_DEPTH}",
    ),
    (
        "10^3 nested mappings",
        lambda: "name: t\nvars:\n" + "".join(" " * (i + 1) + f"k{i}:\n" for i in range(1000)),
        (65, 64),
        f"deeper than {MAX_DEPTH}",
    ),
    (
        "50 MB file",
        lambda: "name: t\n" + "# padding\n" * 5_242_880,
        (1, 1),
        f"the limit is {MAX_FILE_BYTES:,} bytes",
    ),
    (
        "10^5 steps",
        lambda: (
            "name: t\nstart: s0\nsteps:\n" + "".join(f"  s{i}: {{goto: s{i + 1}}}\n" for i in range(100_000))
        ),
        (1, 1),
        f"the limit is {MAX_FILE_BYTES:,} bytes",
    ),
    (
        "1,500 steps",
        lambda: (
            "name: t\nstart: s0\nsteps: {"
            + ", ".join(f"s{i}: {{goto: s{i + 1}}}" for i in range(1500))
            + "}\n"
        ),
        (3, 1),
        f"1,500 steps; the limit is {MAX_STEPS:,}",
    ),
    (
        "60,000 tiny values",
        lambda: "name: t\nvars:\n  x: [" + ",".join(["1"] * 60_000) + "]\n",
        (3, 99_993),
        f"more than {MAX_VALUES:,} YAML values",
    ),
    ("binary junk", lambda: b"name: t\n" + bytes(range(128, 256)) * 8, (2, 1), "not UTF-8 text: byte 0x80"),
    (
        "latin-1 text",
        lambda: "name: t\nsay: caf\xe9\n".encode("latin-1"),
        (2, 9),
        "not UTF-8 text: byte 0xe9",
    ),
    ("NUL byte", lambda: "name: t\nstart: s\x00\n", (2, 9), "control character U+0000"),
    (
        "5,000-digit number",
        lambda: "name: t\nvars:\n  n: " + "9" * 5000 + "\n",
        (3, 6),
        "cannot read this value",
    ),
    (
        "python tag",
        lambda: "name: !!python/object/apply:os.system ['id']\n",
        (1, 7),
        "is not allowed in flow files",
    ),
    (
        "python scalar tag",
        lambda: "name: !!python/name:os.system\n",
        (1, 7),
        "could not determine a constructor",
    ),
]


def _write(tmp_path: Path, content: str | bytes) -> Path:
    path = tmp_path / "bomb.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


@pytest.mark.parametrize(("name", "make", "where", "fragment"), BOMBS, ids=[b[0] for b in BOMBS])
def test_validate_refuses_a_hostile_file_fast_with_one_line(
    tmp_path: Path, name: str, make: Callable[[], str | bytes], where: tuple[int, int] | None, fragment: str
) -> None:
    path = _write(tmp_path, make())
    with metered(lines=False) if name not in UNMETERED else nullcontext(Meter()) as meter:
        report = validate_file(path)
    assert report.flow is None
    [error] = report.errors
    assert fragment in error.message, str(error)
    if where is not None:
        assert (error.line, error.column) == where, str(error)
    assert "\n" not in str(error)
    assert str(error).startswith(f"{path}:{error.line}:{error.column}: error: ")
    assert meter.steps <= MAX_CALLS, f"{meter.steps:,} calls"
    assert meter.peak <= MAX_PEAK_BYTES, f"{meter.peak:,} bytes"


def test_a_big_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("wb") as f:
        f.truncate(200 * 1024 * 1024)  # 200 MB of zeros, sparse: no disk used
    with metered(lines=False) as meter:
        report = validate_file(path)
    [error] = report.errors
    assert f"the file is {200 * 1024 * 1024:,} bytes" in error.message
    assert meter.peak < 1_000_000, "the file was not read"


def test_the_cli_prints_one_line_per_refused_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = _write(tmp_path, b"name: t\nsay: \xff\xfe\n")
    assert main(["validate", str(bad)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"{bad}:2:6: error: <top level>: the file is not UTF-8 text: byte 0xff cannot be decoded; expected "
        "UTF-8 text (hint: is this a binary file? save flows as UTF-8)",
        f"{bad}: 1 error(s)",
    ]


@pytest.mark.parametrize("name", ["alias bomb", "binary junk", "10^4 nested lists"])
def test_loading_flows_for_ivr_run_refuses_the_same_way(tmp_path: Path, name: str) -> None:
    [(_, make, where, fragment)] = [b for b in BOMBS if b[0] == name]
    path = _write(tmp_path, make())
    with pytest.raises(FlowError) as caught:
        load_library(path)
    first = caught.value.issues[0]
    assert first.is_error
    assert fragment in first.message
    if where is not None:
        assert (first.line, first.column) == where


def test_ivr_run_exits_with_one_line_for_a_hostile_flow(tmp_path: Path) -> None:
    _write(tmp_path, _billion_laughs())
    env = {k: v for k, v in os.environ.items() if not k.startswith("IVR_")}
    result = subprocess.run(
        [sys.executable, "-m", "ivr", "run", "--no-ari", "--flows", str(tmp_path), "--default-flow", "bomb"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "flow error:" in lines[0]
    assert "bomb.yaml:3:28:" in lines[0]
    assert "aliases expand" in lines[0]
    assert "Traceback" not in result.stderr


def test_a_flow_near_the_limits_still_loads_with_its_marks(tmp_path: Path) -> None:
    """A big ordinary flow (999 steps, shared prompts through anchors) loads, and its errors still point
    at the right line and column."""
    steps = "".join(
        f"  s{i}:\n    say: Prompt number {i} of a long but ordinary flow.\n    next: {f's{i + 1}' if i < 997 else 'end'}\n"
        for i in range(998)
    )
    text = (
        "name: big\nstart: s0\nsettings: &shared {max_retries: 2}\nsteps:\n" + steps + "  end:\n    hangup:\n"
    )
    path = _write(tmp_path, text)
    report = validate_file(path)
    assert report.ok, [str(i) for i in report.errors]
    broken = _write(tmp_path, text.replace("next: s501\n", "next: s5O1\n"))
    [error] = validate_file(broken).errors
    assert (error.line, error.column, error.path) == (1507, 11, ("steps", "s500", "next"))
