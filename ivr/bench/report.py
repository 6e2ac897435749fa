"""Ramp the number of calls, repeat each step, report medians; JSON result, Markdown table and PNG plot."""

from __future__ import annotations

import json
import logging
import os
import platform
import statistics
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from ivr.bench.generator import BenchConfig, BenchError, run_once

log = logging.getLogger("ivr.bench")

P99_LIMIT_MS = 5.0
ENGINES_NOTE = (
    "sim-text STT and TTS: the instant, deterministic simulation engines for benchmarks (never a "
    "default); the numbers are the framework's own overhead, not a speech provider's"
)


@dataclass
class BenchPlan:
    calls: list[int] = field(default_factory=lambda: [10, 50, 100, 200, 300, 500])
    seconds: float = 10.0
    repeat: int = 3
    rate: int = 16000
    setup_rate: float = 100.0
    settle: float = 1.0
    pin: bool = True
    app_uvloop: bool = False
    app_gc_freeze: bool = False
    keep_going: bool = False
    """Go on ramping after a step failed the criteria (by default the ramp stops there)."""
    log_dir: Path | None = None


# The flat figures of one run that are summarised (median over the repeats) per step.
def _flat(run: dict[str, Any]) -> dict[str, float | None]:
    app, gen = run["app"], run["generator"]
    drops: float | None = None
    if app["inbound_dropped"] is not None:
        drops = float(app["inbound_dropped"])
    return {
        "calls_setup": run["calls_setup"],
        "app_cpu_percent": app["cpu_percent"],
        "generator_cpu_percent": gen["cpu_percent"],
        "rss_per_call_kib": app["rss_per_call_kib"],
        "lateness_p50_ms": run["lateness_ms"]["p50"],
        "lateness_p99_ms": run["lateness_ms"]["p99"],
        "lateness_max_ms": run["lateness_ms"]["max"],
        "drift_median_ms": run["drift_ms"]["median"],
        "drift_max_ms": run["drift_ms"]["max"],
        "frames_received": run["frames_received"],
        "frames_skipped": run["frames_skipped"],
        "inbound_dropped": drops,
        "response_p50_ms": run["response_latency_ms"]["p50"],
        "response_p99_ms": run["response_latency_ms"]["p99"],
        "response_max_ms": run["response_latency_ms"]["max"],
        "responses": run["responses"],
        "generator_tick_p99_ms": gen["tick_lateness_ms"]["p99"],
        "other_on_app_cpu_percent": run["machine_load"]["other_on_app_cpu_percent"],
    }


def summarise(calls: int, runs: list[dict[str, Any]]) -> dict[str, Any]:
    flats = [_flat(r) for r in runs]
    median: dict[str, float | None] = {}
    for key in flats[0] if flats else []:
        values = [v for f in flats if (v := f[key]) is not None]
        median[key] = round(statistics.median(values), 3) if values else None
    p99 = median.get("lateness_p99_ms")
    drops = (median.get("inbound_dropped") or 0) + (median.get("frames_skipped") or 0)
    all_set_up = bool(runs) and all(r["calls_setup"] == calls for r in runs)
    ok = all_set_up and p99 is not None and p99 <= P99_LIMIT_MS and drops == 0
    gen_cpu = median.get("generator_cpu_percent") or 0.0
    return {
        "calls": calls,
        "runs": runs,
        "median": median,
        "drops": drops,
        "ok": ok,
        "generator_saturated": gen_cpu >= 90.0,
    }


def machine() -> dict[str, Any]:
    model = ""
    with_path = Path("/proc/cpuinfo")
    if with_path.is_file():
        for line in with_path.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    try:
        uvloop_version: str | None = metadata.version("uvloop")
    except metadata.PackageNotFoundError:
        uvloop_version = None
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "uvloop": uvloop_version,
    }


async def run_bench(
    plan: BenchPlan, progress: Callable[[str], None] | None = None, *, generator_loop: str = "asyncio"
) -> dict[str, Any]:
    """Every step of the ramp, ``plan.repeat`` times each; the result document (see README, Benchmark)."""
    say = progress or (lambda text: None)
    steps: list[dict[str, Any]] = []
    for calls in plan.calls:
        runs: list[dict[str, Any]] = []
        for index in range(plan.repeat):
            cfg = BenchConfig(
                calls=calls,
                seconds=plan.seconds,
                rate=plan.rate,
                setup_rate=plan.setup_rate,
                settle=plan.settle,
                pin=plan.pin,
                app_uvloop=plan.app_uvloop,
                app_gc_freeze=plan.app_gc_freeze,
                log_dir=plan.log_dir,
            )
            try:
                run = await run_once(cfg, index)
            except BenchError as exc:
                say(f"N={calls} run {index + 1}: {exc}")
                raise
            runs.append(run)
            say(
                f"N={calls} run {index + 1}/{plan.repeat}: set up {run['calls_setup']}, "
                f"lateness p99 {run['lateness_ms']['p99']} ms, app CPU {run['app']['cpu_percent']}%, "
                f"generator CPU {run['generator']['cpu_percent']}%"
            )
        step = summarise(calls, runs)
        steps.append(step)
        if not step["ok"] and not plan.keep_going:
            say(f"N={calls} fails the criteria; stopping the ramp (--keep-going to go on)")
            break
    # The answer is the last passing N below the first failing one: a step above a failure can pass by
    # luck (a window that happened to hold no garbage-collection stall), which is listed, not believed.
    best: int | None = None
    for step in sorted(steps, key=lambda s: s["calls"]):
        if not step["ok"]:
            break
        best = step["calls"]
    passed_above = [s["calls"] for s in steps if s["ok"] and best is not None and s["calls"] > best]
    if best is None:
        passed_above = [s["calls"] for s in steps if s["ok"]]
    plan_doc = asdict(plan)
    plan_doc["log_dir"] = str(plan.log_dir) if plan.log_dir else None
    return {
        "bench": "ivr bench",
        "format": 1,
        "engines": ENGINES_NOTE,
        "flow": "ivr/bench/flows/bench.yaml (ask -> caller answers -> say it back -> ask again)",
        "criteria": {
            "lateness_p99_ms_max": P99_LIMIT_MS,
            "drops": "app inbound drops (from its /metrics when it has one) + frames skipped (seen at the receiver) == 0",
            "calls_setup": "== N in every run",
        },
        "machine": machine(),
        "generator_loop": generator_loop,
        "app_loop": "uvloop" if plan.app_uvloop else "asyncio (ivr run default)",
        "app_gc": "gc.freeze() after imports (experiment)" if plan.app_gc_freeze else "default",
        "plan": plan_doc,
        "steps": steps,
        "max_calls_ok": best,
        "passed_above_first_failure": passed_above,
        "argv": sys.argv,
    }


def table(result: dict[str, Any]) -> str:
    """The per-N medians as a Markdown table."""
    head = (
        "| N | set up | app CPU % | generator CPU % | RSS/call KiB | lateness p50 / p99 / max ms | "
        "drift max ms | frames skipped | inbound drops | response p50 / p99 ms | other load on app CPU % | ok |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = []

    def f(value: float | None, digits: int = 1) -> str:
        return "n/a" if value is None else f"{value:.{digits}f}"

    for step in result["steps"]:
        m = step["median"]
        rows.append(
            f"| {step['calls']} | {f(m['calls_setup'], 0)} | {f(m['app_cpu_percent'])} | "
            f"{f(m['generator_cpu_percent'])} | {f(m['rss_per_call_kib'], 0)} | "
            f"{f(m['lateness_p50_ms'], 2)} / {f(m['lateness_p99_ms'], 2)} / {f(m['lateness_max_ms'], 1)} | "
            f"{f(m['drift_max_ms'], 2)} | {f(m['frames_skipped'], 0)} | {f(m['inbound_dropped'], 0)} | "
            f"{f(m['response_p50_ms'], 0)} / {f(m['response_p99_ms'], 0)} | {f(m['other_on_app_cpu_percent'])} | "
            f"{'yes' if step['ok'] else 'no'} |"
        )
    return head + "\n".join(rows) + "\n"


def write_json(result: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(result, indent=2) + "\n")


def plot(result: dict[str, Any], path: Path) -> bool:
    """Lateness and CPU against N as a PNG; False (nothing written) if matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    steps = result["steps"]
    ns = [s["calls"] for s in steps]

    def series(key: str) -> list[float]:
        return [float("nan") if s["median"][key] is None else s["median"][key] for s in steps]

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(7, 7), sharex=True)
    ax1.plot(ns, series("lateness_p50_ms"), "o-", label="p50")
    ax1.plot(ns, series("lateness_p99_ms"), "o-", label="p99")
    ax1.plot(ns, series("lateness_max_ms"), "o--", label="max", alpha=0.6)
    ax1.axhline(P99_LIMIT_MS, color="red", linestyle=":", label=f"p99 limit {P99_LIMIT_MS:g} ms")
    ax1.set_ylabel("frame lateness at the caller (ms)")
    ax1.set_yscale("log")
    ax1.set_ylim(bottom=0.1)
    ax1.legend()
    ax1.grid(True, alpha=0.3)
    ax2.plot(ns, series("app_cpu_percent"), "o-", label="ivr run")
    ax2.plot(ns, series("generator_cpu_percent"), "o-", label="load generator")
    ax2.axhline(100.0, color="red", linestyle=":", label="one core")
    ax2.set_ylabel("CPU (% of one core)")
    ax2.set_xlabel("concurrent calls (N)")
    ax2.legend()
    ax2.grid(True, alpha=0.3)
    m = result["machine"]
    rate = result["plan"]["rate"]
    fig.suptitle(f"ivr bench, {rate // 1000} kHz, {m['nproc']} CPUs, Python {m['python']} (medians)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
