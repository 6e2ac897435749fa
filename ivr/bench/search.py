"""The search: per rate and server shape, the most calls that stay clean, and its ratio to the C reference.

A point (N calls) is measured ``repeat`` times, each time with a fresh server, and judged on the medians:
it passes when every run set up all N calls with no failed connection, and the medians show p99 lateness
<= 5 ms, no dropped frames (the server's own counters plus whole periods lost at the receiver) and drift
<= one frame (20 ms) for the worst call. The search doubles N from ``start`` while points pass (up to
``max_calls``), then bisects between the last pass and the first failure until the gap is within
``resolution`` (or 10 % of N). A noisy machine can make a point above a failure pass: the figure is the
bisection's result, with every point listed in the JSON.
"""

from __future__ import annotations

import statistics
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ivr.bench.generator import BenchConfig, run_once
from ivr.bench.servers import BenchContext, Shape
from ivr.bench.ws_shape import flat as ws_flat
from ivr.bench.ws_shape import judge as ws_judge

P99_LIMIT_MS = 5.0
DRIFT_LIMIT_MS = 20.0
GENERATOR_BUSY_PERCENT = 85.0
"""Above this the generator itself may be what is measured: the point is flagged."""
NOISY_PERCENT = 10.0
"""Other processes took more than this share of the server's CPUs: the point is flagged as noisy."""


@dataclass
class SearchPlan:
    shapes: list[Shape]
    rates: list[int] = field(default_factory=lambda: [8000, 16000])
    calls: list[int] | None = None
    """Measure exactly these N (no search)."""
    start: int = 100
    max_calls: int = 1600
    resolution: int = 50
    repeat: int = 3
    seconds: float = 10.0
    setup_rate: float = 200.0
    settle: float = 1.0
    after: float = 3.0
    pin: bool = True
    log_dir: Path | None = None
    quiet_below: float = 25.0
    quiet_wait: float = 0.0
    waves: int = 1


def _flat(run: dict[str, Any]) -> dict[str, float | None]:
    """The figures of one run that are summarised (median over the repeats) per point."""
    server, gen = run["server"], run["generator"]
    return {
        "calls_setup": run["calls_setup"],
        "failed_connections": run["failed_connections"],
        "lateness_p50_ms": run["lateness_ms"]["p50"],
        "lateness_p99_ms": run["lateness_ms"]["p99"],
        "lateness_max_ms": run["lateness_ms"]["max"],
        "drift_max_ms": run["drift_ms"]["max"],
        "frames_skipped": run["frames_skipped"],
        "drops": run["drops"]["inbound"] + run["drops"]["outbound"],
        "server_cpu_percent": server["cpu_percent"],
        "cpu_percent_per_call": server["cpu_percent_per_call"],
        "rss_idle_kib": server["rss_idle_kib"],
        "rss_per_call_kib": server["rss_per_call_kib"],
        "rss_after_minus_idle_kib": server["rss_after_minus_idle_kib"],
        "rss_after_last_wave_minus_idle_kib": server.get("rss_after_last_wave_minus_idle_kib"),
        "response_p50_ms": run["response_latency_ms"]["p50"],
        "response_p99_ms": run["response_latency_ms"]["p99"],
        "key_response_p50_ms": run["key_response_latency_ms"]["p50"],
        "generator_cpu_percent": gen["cpu_percent"],
        "generator_tick_p99_ms": gen["tick_lateness_ms"]["p99"],
        "other_on_server_cpus_percent": run["machine_load"]["other_on_server_cpus_percent"],
        "other_on_generator_cpu_percent": run["machine_load"].get("other_on_generator_cpu_percent"),
        "busy_before_percent": run["machine_load"].get("busy_before_percent"),
        **ws_flat(run),
    }


def summarise(calls: int, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of a point's runs and whether it passes the criteria."""
    flats = [_flat(r) for r in runs]
    median: dict[str, float | None] = {}
    for key in flats[0] if flats else []:
        values = [v for f in flats if (v := f[key]) is not None]
        median[key] = round(statistics.median(values), 4) if values else None
    p99, drift = median.get("lateness_p99_ms"), median.get("drift_max_ms")
    lost = (median.get("drops") or 0) + (median.get("frames_skipped") or 0)
    set_up = bool(runs) and all(r["calls_setup"] == calls and r["failed_connections"] == 0 for r in runs)
    why: list[str] = []
    if runs and runs[0].get("asterisk_paced") is not None:  # ari-ws: Asterisk paces, other criteria
        why = ws_judge(median, runs, calls)
    else:
        if not set_up:
            why.append("calls not all set up or connections failed")
        if p99 is None or p99 > P99_LIMIT_MS:
            why.append(f"p99 {p99} ms > {P99_LIMIT_MS:g}")
        if lost:
            why.append(f"{lost:g} frames dropped or skipped")
        if drift is None or drift > DRIFT_LIMIT_MS:
            why.append(f"drift {drift} ms > {DRIFT_LIMIT_MS:g}")
    return {
        "calls": calls,
        "ok": not why,
        "why_not": why,
        "median": median,
        "generator_limited": (median.get("generator_cpu_percent") or 0.0) >= GENERATOR_BUSY_PERCENT,
        "noisy": (median.get("other_on_server_cpus_percent") or 0.0) > NOISY_PERCENT,
        "runs": runs,
    }


Measure = Callable[[int], Awaitable[dict[str, Any]]]


async def search_max(
    measure: Measure, *, start: int, max_calls: int, resolution: int
) -> tuple[int | None, bool, list[dict[str, Any]]]:
    """Step up (doubling) then bisect; (most calls that passed or None, reached max_calls, points)."""
    points: dict[int, dict[str, Any]] = {}

    async def ok(n: int) -> bool:
        if n not in points:
            points[n] = await measure(n)
        return bool(points[n]["ok"])

    lo, hi = 0, None
    n = max(1, min(start, max_calls))
    while True:
        if await ok(n):
            lo = n
            if n >= max_calls:
                break
            n = min(2 * n, max_calls)
        else:
            hi = n
            break
    if hi is not None:
        while hi - lo > max(resolution, lo // 10, 1):
            mid = (lo + hi) // 2
            if await ok(mid):
                lo = mid
            else:
                hi = mid
    best = lo if lo > 0 else None
    return best, best is not None and best >= max_calls, [points[k] for k in sorted(points)]


async def run_search(
    plan: SearchPlan, ctx: BenchContext, say: Callable[[str], None] = lambda _: None
) -> list[dict[str, Any]]:
    """One entry per (rate, shape): its points and its figure; ratios are added by the report."""
    results: list[dict[str, Any]] = []
    for rate in plan.rates:
        for shape in plan.shapes:

            async def measure(n: int, shape: Shape = shape, rate: int = rate) -> dict[str, Any]:
                runs = []
                for index in range(plan.repeat):
                    cfg = BenchConfig(
                        shape=shape,
                        calls=n,
                        seconds=plan.seconds,
                        rate=rate,
                        setup_rate=plan.setup_rate,
                        settle=plan.settle,
                        after=plan.after,
                        pin=plan.pin,
                        log_dir=plan.log_dir,
                        quiet_below=plan.quiet_below,
                        quiet_wait=plan.quiet_wait,
                        waves=plan.waves,
                    )
                    run = await run_once(cfg, ctx, index)
                    runs.append(run)
                    say(
                        f"{rate // 1000} kHz {shape.key} N={n} run {index + 1}/{plan.repeat}: "
                        f"p99 {run['lateness_ms']['p99']} ms, drift {run['drift_ms']['max']} ms, "
                        f"server CPU {run['server']['cpu_percent']}%, generator {run['generator']['cpu_percent']}%"
                    )
                point = summarise(n, runs)
                say(
                    f"{rate // 1000} kHz {shape.key} N={n}: {'pass' if point['ok'] else 'fail'}"
                    + (f" ({'; '.join(point['why_not'])})" if point["why_not"] else "")
                )
                return point

            if plan.calls is not None:
                points = [await measure(n) for n in plan.calls]
                passing = [p["calls"] for p in points if p["ok"]]
                best: int | None = max(passing) if passing else None
                capped = best is not None and best == max(plan.calls)
            else:
                best, capped, points = await search_max(
                    measure, start=plan.start, max_calls=plan.max_calls, resolution=plan.resolution
                )
            at_best = next((p for p in points if p["calls"] == best), None)
            results.append(
                {
                    "rate": rate,
                    "shape": shape.key,
                    "kind": shape.kind,
                    "workers": shape.workers,
                    "label": shape.label,
                    "max_calls_ok": best,
                    "reached_limit": capped,
                    "at_max": at_best["median"] if at_best is not None else None,
                    "generator_limited": bool(at_best and at_best["generator_limited"]),
                    "noisy_points": [p["calls"] for p in points if p["noisy"]],
                    "points": points,
                }
            )
    return results
