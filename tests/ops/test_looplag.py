"""The loop-lag monitor: lag observed per heartbeat, a stall logged once with what held the loop."""

from __future__ import annotations

import asyncio
import linecache
import logging
import os
import time
from pathlib import Path

import pytest

from ivr.ops.looplag import LoopMonitor, Stall, describe_stack
from ivr.ops.metrics import Metrics


def hold_the_loop_for(seconds: float) -> None:
    time.sleep(seconds)  # a blocking call, as an import or a model load would be


async def test_a_blocking_callback_is_measured_and_named(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    stalls: list[Stall] = []
    monitor = LoopMonitor(metrics.loop_lag.observe, on_stall=stalls.append)
    monitor.start()
    try:
        await asyncio.sleep(0.03)
        with caplog.at_level(logging.WARNING, logger="ivr.ops.looplag"):
            hold_the_loop_for(0.12)
            for _ in range(100):
                await asyncio.sleep(0.01)
                if stalls:
                    break
    finally:
        monitor.stop()
    assert len(stalls) == 1, stalls
    assert stalls[0].seconds >= 0.1
    assert "hold_the_loop_for" in stalls[0].where
    lines = [r.getMessage() for r in caplog.records if "stalled" in r.getMessage()]
    assert len(lines) == 1
    assert "hold_the_loop_for" in lines[0]
    assert monitor.max_lag >= 0.1
    text = metrics.exposition()[0].decode()
    assert "ivr_loop_lag_seconds_count" in text
    count = next(line for line in text.splitlines() if line.startswith("ivr_loop_lag_seconds_count"))
    assert float(count.split()[-1]) >= 3


async def test_an_idle_loop_logs_no_stall() -> None:
    stalls: list[Stall] = []
    # A generous threshold: on a loaded CI machine the OS alone may hold a thread back 10 ms.
    monitor = LoopMonitor(on_stall=stalls.append, stall_after=0.25)
    monitor.start()
    try:
        await asyncio.sleep(0.05)
    finally:
        monitor.stop()
    assert stalls == []


def test_interval_must_be_below_the_stall_threshold() -> None:
    with pytest.raises(ValueError, match="interval"):
        LoopMonitor(interval=0.02, stall_after=0.01)


def test_naming_the_stack_reads_no_source_file(tmp_path: Path) -> None:
    """The watchdog names frames without linecache: no file reads, nothing kept past the call."""
    source = tmp_path / "ivr" / "held_here.py"
    source.parent.mkdir()
    source.write_text("import sys\n\ndef inner():\n    return sys._getframe()\n")
    namespace: dict[str, object] = {}
    exec(compile(source.read_text(), str(source), "exec"), namespace)
    frame = namespace["inner"]()  # type: ignore[operator]
    linecache.clearcache()
    where = describe_stack(frame)
    assert where.startswith(f"ivr{os.sep}held_here.py:4 inner < ")
    assert str(source) not in linecache.cache
