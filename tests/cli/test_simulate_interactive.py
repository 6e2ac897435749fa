"""``ivr simulate --interactive``: a person types what the caller says and presses."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

MENU = Path(__file__).parents[1] / "call" / "data" / "patient.yaml"
GOODBYE = Path(__file__).parent / "data" / "goodbye.yaml"


async def test_typed_lines_are_spoken_and_digits_pressed() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ivr", "simulate", str(MENU), "--text", "--interactive",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdin is not None
    assert proc.stdout is not None
    seen: list[str] = []

    async def until(fragment: str) -> None:
        while True:
            line = (await proc.stdout.readline()).decode()  # type: ignore[union-attr]
            assert line, f"ended before {fragment!r}: {seen}"
            seen.append(line)
            if fragment in line:
                return

    try:
        async with asyncio.timeout(60):
            await until('ivr    main: "Say sales or support')
            proc.stdin.write(b"support\n")
            await until('heard "support"')
            await until('ivr    support: "Support it is."')
            proc.stdin.close()  # end of input: the caller hangs up
            out, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = "".join(seen) + out.decode()
    assert "summary outcome:" in text
    assert "TEXT MODE" in text


async def test_the_simulation_ends_when_the_ivr_hangs_up_without_waiting_for_enter() -> None:
    """The IVR ends the call by itself while stdin stays open: the simulation must not wait for Enter."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ivr", "simulate", str(GOODBYE), "--text", "--interactive",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(60):
            out = await proc.stdout.read()  # EOF only once the process has exited; stdin stays open
            await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert "summary outcome: hangup" in out.decode()
