"""The search over N and the pass/fail criteria, on made-up measurements (no processes, no clock)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ivr.bench.report import add_ratios, table
from ivr.bench.search import search_max, summarise
from ivr.bench.stats import frame_stats


def _run(
    calls: int, *, p99: float = 1.0, drift: float = 0.1, setup: int | None = None, drops: int = 0
) -> dict[str, Any]:
    return {
        "calls_setup": calls if setup is None else setup,
        "failed_connections": 0 if setup is None else calls - setup,
        "lateness_ms": {"p50": 0.5, "p99": p99, "max": p99 * 2},
        "drift_ms": {"median": drift / 2, "max": drift},
        "frames_skipped": 0,
        "drops": {"inbound": drops, "outbound": 0, "source": "test"},
        "response_latency_ms": {"p50": 320.0, "p99": 330.0, "max": 340.0},
        "key_response_latency_ms": {"p50": 20.0, "p99": 21.0, "max": 22.0},
        "server": {
            "cpu_percent": calls / 10,
            "cpu_percent_per_call": 0.1,
            "rss_idle_kib": 90000,
            "rss_per_call_kib": 100.0,
            "rss_after_minus_idle_kib": 500,
        },
        "generator": {"cpu_percent": 20.0, "tick_lateness_ms": {"p99": 1.0}},
        "machine_load": {"other_on_server_cpus_percent": 0.0},
        "pinning": {"exclusive": True, "note": "test"},
    }


def test_a_point_passes_on_medians_and_fails_for_each_criterion() -> None:
    assert summarise(100, [_run(100), _run(100, p99=9.0), _run(100)])["ok"]  # one bad run of three
    assert not summarise(100, [_run(100, p99=6.0)] * 3)["ok"]
    assert not summarise(100, [_run(100, drift=25.0)] * 3)["ok"]
    assert not summarise(100, [_run(100, drops=3)] * 3)["ok"]
    failed = summarise(100, [_run(100), _run(100, setup=99)])
    assert not failed["ok"]
    assert "connections failed" in failed["why_not"][0]


async def test_search_steps_up_then_bisects_to_the_resolution() -> None:
    tried: list[int] = []

    async def measure(n: int) -> dict[str, Any]:
        tried.append(n)
        return summarise(n, [_run(n, p99=1.0 if n <= 730 else 8.0)])

    best, capped, points = await search_max(measure, start=100, max_calls=1600, resolution=50)
    assert tried[:4] == [100, 200, 400, 800]
    assert best is not None
    assert 730 - 80 <= best <= 730
    assert not capped
    assert [p["calls"] for p in points] == sorted(tried)


async def test_search_reports_reaching_the_limit_and_failing_at_once() -> None:
    async def always(n: int) -> dict[str, Any]:
        return summarise(n, [_run(n)])

    assert (await search_max(always, start=100, max_calls=300, resolution=50))[:2] == (300, True)

    async def never(n: int) -> dict[str, Any]:
        return summarise(n, [_run(n, p99=50.0)])

    best, capped, points = await search_max(never, start=100, max_calls=1600, resolution=50)
    assert best is None
    assert not capped
    assert [p["calls"] for p in points] == [50, 100]


def test_ratios_to_the_reference_and_the_table() -> None:
    def entry(kind: str, workers: int, best: int, cpu: float, capped: bool = False) -> dict[str, Any]:
        point = summarise(best, [_run(best)])
        point["median"]["cpu_percent_per_call"] = cpu
        return {
            "rate": 16000, "shape": kind if kind == "ref" else f"{kind}-w{workers}", "kind": kind,
            "workers": workers, "label": kind, "max_calls_ok": best, "reached_limit": capped,
            "at_max": point["median"], "generator_limited": False, "points": [point],
        }  # fmt: skip

    results = [
        entry("ref", 1, 1600, 0.02, capped=True),
        entry("dialplan", 1, 400, 0.2),
        entry("dialplan", 2, 760, 0.2),
    ]
    add_ratios(results)
    assert results[1]["ratios"]["calls_x_ref"] == 0.25
    assert results[1]["ratios"]["cpu_per_call_x_ref"] == 10.0
    assert results[2]["ratios"]["calls_x_one_worker"] == 1.9
    text = table({"results": results})
    assert "| 16 kHz | ref | >= 1600 |" in text
    assert "| <= 0.25 |" in text  # the reference held every N tried: the ratio is a bound


def test_frame_stats_lateness_drift_and_lost_periods() -> None:
    t0 = 1000.0
    steady = (t0 + np.arange(500) * 0.020).astype(np.float64)
    late_one = steady.copy()
    late_one[100] += 0.004  # one frame 4 ms late
    skipped = np.concatenate([steady[:250], steady[251:]])  # one period never sent
    stats = frame_stats([steady, late_one])
    assert stats["frames_received"] == 1000
    assert stats["frames_skipped"] == 0
    assert stats["lateness_ms"]["max"] is not None
    assert abs(stats["lateness_ms"]["max"] - 4.0) < 1e-6
    assert stats["drift_ms"]["max"] is not None
    assert stats["drift_ms"]["max"] < 1e-6
    lost = frame_stats([skipped])
    assert lost["frames_skipped"] == 1
    assert lost["drift_ms"]["max"] is not None
    assert abs(lost["drift_ms"]["max"] - 20.0) < 1e-6
