"""The bench's result document: machine, plan, per-shape figures with ratios to the C reference; table, plot."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

from ivr.bench.procfs import cpu_model
from ivr.bench.search import DRIFT_LIMIT_MS, P99_LIMIT_MS, SearchPlan
from ivr.bench.servers import BenchContext
from ivr.bench.ws_shape import WS_SHAPE, ws_note

ENGINES_NOTE = (
    "sim-text STT and TTS: the instant, deterministic simulation engines for benchmarks (never a "
    "default); the numbers are the framework's own overhead, not a speech provider's"
)
FLOW_NOTE = (
    "ivr/bench/flows/bench.yaml: ask (speech: VAD, endpointing, STT) -> menu (DTMF, barge-in on) -> "
    "templated reply or long fixed prompt -> ask again; fixed prompts prerendered; records and metrics on"
)


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    """What the figures depend on: cores, CPU model, kernel, Python, loop."""
    return {
        "nproc": os.cpu_count(),
        "usable_cpus": sorted(os.sched_getaffinity(0)),
        "cpu_model": cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "uvloop": _version("uvloop"),
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),
    }


def add_ratios(results: list[dict[str, Any]]) -> None:
    """Each shape's figures as ratios to the C reference's at the same rate (and to one worker)."""
    for entry in results:
        ref = next((r for r in results if r["rate"] == entry["rate"] and r["kind"] == "ref"), None)
        one = next(
            (
                r
                for r in results
                if r["rate"] == entry["rate"] and r["kind"] == entry["kind"] and r["workers"] == 1
            ),
            None,
        )
        ratios: dict[str, Any] = {}
        if ref is not None and ref is not entry:
            ratios["calls_x_ref"] = _ratio(entry["max_calls_ok"], ref["max_calls_ok"])
            ratios["ref_reached_limit"] = ref["reached_limit"]
            ratios["cpu_per_call_x_ref"] = _ratio(
                _at(entry, "cpu_percent_per_call"), _at(ref, "cpu_percent_per_call")
            )
            ratios["rss_per_call_x_ref"] = _ratio(
                _at(entry, "rss_per_call_kib"), _at(ref, "rss_per_call_kib")
            )
        if one is not None and one is not entry:
            ratios["calls_x_one_worker"] = _ratio(entry["max_calls_ok"], one["max_calls_ok"])
        entry["ratios"] = ratios


def _at(entry: dict[str, Any], key: str) -> float | None:
    at = entry.get("at_max")
    value = at.get(key) if at else None
    return None if value is None else float(value)


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 2)


def document(
    plan: SearchPlan,
    ctx: BenchContext,
    results: list[dict[str, Any]],
    *,
    generator_loop: str,
    skipped: list[str],
    started: float,
) -> dict[str, Any]:
    add_ratios(results)
    plan_doc = asdict(plan)
    plan_doc["shapes"] = [s.key for s in plan.shapes]
    plan_doc["log_dir"] = str(plan.log_dir) if plan.log_dir else None
    return {
        "bench": "ivr bench",
        "format": 2,
        "date": time.strftime("%Y-%m-%d", time.localtime(started)),
        "duration_seconds": round(time.time() - started, 1),
        "engines": ENGINES_NOTE,
        "flow": FLOW_NOTE,
        "criteria": {
            "lateness_p99_ms_max": P99_LIMIT_MS,
            "drift_ms_max": DRIFT_LIMIT_MS,
            "drops": "server counters (inbound + outbound) + whole periods lost at the receiver == 0",
            "calls": "all N set up, no failed connection, in every run; medians over the repeats",
        },
        "machine": machine(),
        "generator_loop": generator_loop,
        "server_loop": ctx.app_loop,
        "server_pacer": ctx.app_pacer,
        "server_pacer_realtime": ctx.pacer_realtime,
        "workers_flag": ctx.workers_flag,
        "reference_binary": str(ctx.reference) if ctx.reference else None,
        "skipped": skipped,
        "plan": plan_doc,
        "results": results,
        "argv": sys.argv,
    }


def describe_machine(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    return (
        f"machine: {m['nproc']} CPUs ({m['cpu_model'] or 'unknown model'}), kernel {m['kernel']}, "
        f"{m['implementation']} {m['python']}; ivr run on {doc['server_loop']} "
        f"({doc.get('server_pacer', 'loop')} pacing{_realtime(doc)}), generator on "
        f"{doc['generator_loop']}; load average {m['loadavg_1m_at_start']} at start"
    )


def _realtime(doc: dict[str, Any]) -> str:
    priority = doc.get("server_pacer_realtime") or 0
    return f", SCHED_FIFO {priority}" if priority and doc.get("server_pacer") == "native" else ""


def _f(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _calls(entry: dict[str, Any]) -> str:
    best = entry["max_calls_ok"]
    if best is None:
        failed = [p["calls"] for p in entry["points"] if not p["ok"]]
        return f"< {min(failed)}" if failed else "none"
    return f">= {best}" if entry["reached_limit"] else str(best)


def table(doc: dict[str, Any]) -> str:
    """The figures per rate and shape as a Markdown table (ratios to the C reference of the same rate)."""
    head = (
        "| rate | server | most calls | x C ref | p99 ms at N | drift ms | CPU % at N | CPU %/call | "
        "x C ref | RSS KiB/call | RSS after - idle KiB | note |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = []
    waves = doc.get("plan", {}).get("waves", 1)
    for e in doc["results"]:
        m = e["at_max"] or {}
        r = e.get("ratios", {})
        notes = []
        if e["generator_limited"]:
            notes.append("generator busy")
        if e.get("noisy_points"):
            noisy = ", ".join(str(n) for n in e["noisy_points"])
            notes.append(f"noisy at N={noisy} (other processes on the server's CPU)")
        if r.get("calls_x_one_worker") is not None:
            notes.append(f"{r['calls_x_one_worker']:.2f}x one worker")
        if e["kind"] == WS_SHAPE and m:
            notes.append(ws_note(m))
        pin = e["points"][0]["runs"][0]["pinning"] if e["points"] and e["points"][0]["runs"] else None
        if pin is not None and not pin["exclusive"]:
            notes.append("generator shares a CPU")
        x_ref = _f(r.get("calls_x_ref"), 2)
        if r.get("ref_reached_limit") and r.get("calls_x_ref") is not None:
            x_ref = f"<= {x_ref}"  # the reference held every N tried: its real figure is higher
        rows.append(
            f"| {e['rate'] // 1000} kHz | {e['label']} | {_calls(e)} | {x_ref} | "
            f"{_f(m.get('lateness_p99_ms'), 2)} | {_f(m.get('drift_max_ms'), 2)} | "
            f"{_f(m.get('server_cpu_percent'))} | {_f(m.get('cpu_percent_per_call'), 3)} | "
            f"{_f(r.get('cpu_per_call_x_ref'), 1)} | {_f(m.get('rss_per_call_kib'), 0)} | "
            f"{_after(m, waves)} | {', '.join(notes)} |"
        )
    return head + "\n".join(rows) + "\n"


def _after(m: dict[str, Any], waves: int) -> str:
    """RSS left after the first wave, and after the last when the run had several (``--waves``)."""
    first = _f(m.get("rss_after_minus_idle_kib"), 0)
    if waves < 2 or m.get("rss_after_last_wave_minus_idle_kib") is None:
        return first
    return f"{first} -> {_f(m.get('rss_after_last_wave_minus_idle_kib'), 0)} after {waves} waves"


def points_table(doc: dict[str, Any]) -> str:
    """Every measured point (medians), for the log of a search."""
    head = (
        "| rate | server | N | ok | p50 / p99 / max ms | drift ms | drops | CPU % | gen CPU % | "
        "RSS/call KiB | response p50 ms | other load % server / gen |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for e in doc["results"]:
        for p in e["points"]:
            m = p["median"]
            rows.append(
                f"| {e['rate'] // 1000} kHz | {e['shape']} | {p['calls']} | {'yes' if p['ok'] else 'no'} | "
                f"{_f(m['lateness_p50_ms'], 2)} / {_f(m['lateness_p99_ms'], 2)} / {_f(m['lateness_max_ms'], 1)} | "
                f"{_f(m['drift_max_ms'], 2)} | {_f(m['drops'], 0)}+{_f(m['frames_skipped'], 0)} | "
                f"{_f(m['server_cpu_percent'])} | {_f(m['generator_cpu_percent'])} | {_f(m['rss_per_call_kib'], 0)} | "
                f"{_f(m['response_p50_ms'], 0)} | {_f(m['other_on_server_cpus_percent'])} / "
                f"{_f(m.get('other_on_generator_cpu_percent'))} |"
            )
    return head + "\n".join(rows) + "\n"


def write_json(doc: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")


def plot(doc: dict[str, Any], path: Path) -> bool:
    """p99 lateness and server CPU against N, one line per shape, one column per rate; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rates = sorted({e["rate"] for e in doc["results"]})
    if not rates:
        return False
    fig, axes = plt.subplots(2, len(rates), figsize=(6.5 * len(rates), 7), sharex="col", squeeze=False)
    for col, rate in enumerate(rates):
        top, bottom = axes[0][col], axes[1][col]
        for e in (e for e in doc["results"] if e["rate"] == rate):
            ns = [p["calls"] for p in e["points"]]
            p99 = [p["median"]["lateness_p99_ms"] or float("nan") for p in e["points"]]
            cpu = [p["median"]["server_cpu_percent"] or float("nan") for p in e["points"]]
            top.plot(ns, p99, "o-", label=e["shape"])
            bottom.plot(ns, cpu, "o-", label=e["shape"])
        top.axhline(P99_LIMIT_MS, color="red", linestyle=":", label=f"p99 limit {P99_LIMIT_MS:g} ms")
        top.set_yscale("log")
        top.set_ylabel("frame lateness p99 at the caller (ms)")
        top.set_title(f"{rate // 1000} kHz")
        top.legend()
        top.grid(True, alpha=0.3)
        bottom.axhline(100.0, color="red", linestyle=":", label="one core")
        bottom.set_ylabel("server CPU (% of one core)")
        bottom.set_xlabel("concurrent calls (N)")
        bottom.legend()
        bottom.grid(True, alpha=0.3)
    m = doc["machine"]
    fig.suptitle(f"ivr bench {doc['date']}, {m['nproc']} CPUs, Python {m['python']} (medians)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
