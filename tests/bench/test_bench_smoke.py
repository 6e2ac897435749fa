"""A small smoke bench: 5 calls for 2 s through a real ``ivr run`` subprocess, one repeat.

It checks that the result document has its fields and sane values; never speed thresholds (CI machines
are noisy, and the real numbers come from ``ivr bench`` on a quiet machine, see README, Benchmark).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
from pathlib import Path
from typing import Any

import pytest

from ivr.bench.report import BenchPlan, run_bench, table, write_json
from ivr.cli.bench_commands import main as bench_main

CALLS = 5
SECONDS = 2.0


async def _bench() -> dict[str, Any]:
    async with asyncio.timeout(90):  # bounded even if the app never comes up
        return await run_bench(BenchPlan(calls=[CALLS], seconds=SECONDS, repeat=1, pin=False, settle=0.5))


def test_smoke_bench_result_has_sane_fields(tmp_path: Path) -> None:
    affinity = os.sched_getaffinity(0)
    result = asyncio.run(_bench())
    assert os.sched_getaffinity(0) == affinity

    assert result["bench"] == "ivr bench"
    assert "sim-text" in result["engines"]
    assert result["machine"]["nproc"] >= 1
    [step] = result["steps"]
    assert step["calls"] == CALLS
    [run] = step["runs"]
    assert run["calls_setup"] == CALLS
    assert run["frames_received"] > 0
    assert run["frames_sent"] > 0
    # every leg got roughly one frame per 20 ms of the window (wide bounds: a noisy CI box)
    assert run["frames_received"] > 0.5 * run["frames_expected"]
    for key in ("p50", "p99", "max"):
        value = run["lateness_ms"][key]
        assert isinstance(value, float)
        assert math.isfinite(value)
        assert value >= 0.0
    assert run["lateness_ms"]["p50"] <= run["lateness_ms"]["p99"] <= run["lateness_ms"]["max"]
    assert run["drift_ms"]["max"] is not None
    assert run["app"]["cpu_percent"] >= 0.0
    assert run["app"]["rss_kib"] > 0
    assert run["app"]["exit_code"] is not None, "the app process was stopped and reaped"
    assert not Path(f"/proc/{run['app']['pid']}").exists(), "the ivr run subprocess was left running"
    assert run["generator"]["cpu_percent"] >= 0.0
    # inbound drops come from the app's /metrics when it has one; otherwise they are reported as unknown
    assert run["app"]["drops_source"] in ("unavailable", "app /metrics (ivr_frames_dropped_total)")
    for name, value in step["median"].items():
        assert value is None or math.isfinite(value), name
    assert result["max_calls_ok"] in (None, CALLS)

    write_json(result, tmp_path / "bench.json")
    assert json.loads((tmp_path / "bench.json").read_text())["steps"][0]["calls"] == CALLS
    assert f"| {CALLS} | {CALLS} |" in table(result)


def test_cli_rejects_a_bad_call_list(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        bench_main(["--calls", "10,abc"])
    assert exc.value.code == 2
    assert "expected numbers separated by commas" in capsys.readouterr().err
