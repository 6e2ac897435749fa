"""The ``ari-ws`` bench shape's criteria: Asterisk paces, so a point is judged on set-up, drops, stalls
and the callers' response latency, never on frame lateness at the caller."""

from __future__ import annotations

from typing import Any

from ivr.bench.search import summarise
from ivr.bench.ws_shape import RESPONSE_P99_LIMIT_MS, judge


def run(**paced: int) -> dict[str, Any]:
    figures = {"stalls": 0, "stalled_ticks": 0, "dropped_messages": 0, "xoff": 3, "max_queue_frames": 400}
    figures.update(paced)
    return {
        "calls_setup": 10,
        "failed_connections": 0,
        "window_seconds": 8.0,
        "lateness_ms": {"p50": None, "p99": None, "max": None},
        "drift_ms": {"median": None, "max": None},
        "frames_skipped": 0,
        "drops": {"inbound": 0, "outbound": 0},
        "server": {
            "cpu_percent": 5.0,
            "cpu_percent_per_call": 0.5,
            "rss_idle_kib": 1,
            "rss_per_call_kib": 2.0,
            "rss_after_minus_idle_kib": 3,
        },
        "response_latency_ms": {"p50": 320.0, "p99": 340.0},
        "key_response_latency_ms": {"p50": 50.0},
        "generator": {"cpu_percent": 10.0, "tick_lateness_ms": {"p99": 1.0}},
        "machine_load": {"other_on_server_cpus_percent": 0.0},
        "asterisk_paced": figures,
    }


def test_a_clean_point_passes_without_any_lateness_figure() -> None:
    point = summarise(10, [run(), run()])
    assert point["ok"], point["why_not"]
    assert point["median"]["xoff"] == 3, "XOFF is counted, and is no failure"


def test_stalls_drops_and_slow_replies_fail_a_point() -> None:
    assert "prompt stalls" in " ".join(summarise(10, [run(stalls=2)])["why_not"])
    assert "Asterisk's full queue" in " ".join(summarise(10, [run(dropped_messages=1)])["why_not"])
    slow = run()
    slow["response_latency_ms"] = {"p50": 400.0, "p99": RESPONSE_P99_LIMIT_MS + 1}
    assert "response p99" in " ".join(summarise(10, [slow])["why_not"])
    lost = run()
    lost["calls_setup"] = 9
    assert not summarise(10, [lost])["ok"]


def test_no_reply_fails_a_long_window_but_not_a_quick_one() -> None:
    quiet = {"response_p99_ms": None}
    long_run, short_run = run(), run()
    short_run["window_seconds"] = 1.5
    assert judge(quiet, [long_run], 10) == ["no caller got a reply within the window"]
    assert judge(quiet, [short_run], 10) == []
