"""``ivr bench --quick``: every server shape once, 5 calls, through real processes and sockets.

It checks that the machinery works and that every figure is produced (the C reference built with gcc,
``ivr run --no-ari`` and ``ivr run`` in ARI mode against the simulated ARI); never speed thresholds (CI
machines are noisy, and the real numbers come from ``ivr bench`` on a quiet machine, see README, Benchmark).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import pytest

from ivr.cli.bench_commands import main as bench_main
from tests.services import unavailable

CALLS = 5


def test_quick_bench_measures_every_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if shutil.which("gcc") is None:
        unavailable("C compiler (gcc)", "apt-get install gcc: ivr bench builds its C reference server")
    affinity = os.sched_getaffinity(0)
    out = tmp_path / "bench.json"
    assert bench_main(["--quick", "--out", str(out), "--plot", str(tmp_path / "bench.png")]) == 0
    assert os.sched_getaffinity(0) == affinity, "the generator's pinning was undone"
    printed = capsys.readouterr().out

    doc = json.loads(out.read_text())
    assert doc["bench"] == "ivr bench"
    assert "sim-text" in doc["engines"]
    assert doc["machine"]["nproc"] >= 1
    assert doc["machine"]["python"]
    assert {e["shape"] for e in doc["results"]} == {"ref", "dialplan-w1", "ari-w1", "ari-ws-w1"}
    for entry in doc["results"]:
        [point] = entry["points"]
        [run] = point["runs"]
        name = entry["shape"]
        assert run["calls_setup"] == CALLS, name
        assert run["failed_connections"] == 0, name
        assert run["frames_sent"] > 0, name
        if entry["kind"] == "ari-ws":  # Asterisk paces: its figures instead of lateness at the caller
            paced = run["asterisk_paced"]
            assert paced["stalls"] == 0, name
            assert paced["dropped_messages"] == 0, name
            assert paced["max_queue_frames"] > 0, f"{name}: the app sent its prompts ahead"
            assert run["lateness_ms"]["p99"] is None, f"{name}: no lateness of the app's is claimed"
        else:
            # every leg got frames at roughly one per 20 ms of the window (wide bounds: a noisy CI box)
            assert run["frames_received"] > 0.5 * run["frames_expected"], name
            late = run["lateness_ms"]
            assert all(
                isinstance(late[k], float) and math.isfinite(late[k]) and late[k] >= 0 for k in late
            ), name
            assert late["p50"] <= late["p99"] <= late["max"], name
            assert run["drift_ms"]["max"] is not None, name
        server = run["server"]
        assert server["exit_code"] is not None, f"{name}: the server was stopped and reaped"
        assert not Path(f"/proc/{server['pid']}").exists(), f"{name}: the server process was left running"
        assert server["cpu_percent"] >= 0.0
        for key in ("rss_idle_kib", "rss_load_kib", "rss_after_kib"):
            assert server[key] > 0, (name, key)
        assert run["generator"]["cpu_percent"] >= 0.0
        for value in point["median"].values():
            assert value is None or math.isfinite(value), name
        assert entry["max_calls_ok"] in (None, CALLS)
    ref = next(e for e in doc["results"] if e["kind"] == "ref")
    ref_run = ref["points"][0]["runs"][0]
    assert ref_run["drops"]["source"] == "reference server counters"
    assert ref_run["server"]["reference_stats"]["accepted"] == CALLS
    for entry in doc["results"]:
        if entry["kind"] != "ref":
            run = entry["points"][0]["runs"][0]
            assert run["drops"]["source"] == "ivr /metrics (ivr_frames_dropped_total)", entry["shape"]
            assert "calls_x_ref" in entry["ratios"]
    # the table and the machine description are printed
    assert "| 16 kHz | C reference" in printed
    assert "machine: " in printed
    assert "pinning: " in printed


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--calls", "10,abc"], "expected numbers separated by commas"),
        (["--shapes", "ref,nginx"], "shapes are ref, dialplan, ari"),
        (["--waves", "0"], "expected one positive number of waves"),
    ],
    ids=["bad-call-list", "unknown-shape", "no-waves"],
)
def test_cli_rejects_a_bad_flag(argv: list[str], error: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        bench_main(argv)
    assert exc.value.code == 2
    assert error in capsys.readouterr().err


def test_later_waves_on_the_same_server_report_the_rss_each_left(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    argv = [
        "--quick",
        "--shapes",
        "dialplan,ari",
        "--waves",
        "3",
        "--out",
        str(out),
        "--plot",
        str(tmp_path / "p.png"),
    ]
    assert bench_main(argv) == 0
    printed = capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert doc["plan"]["waves"] == 3
    for entry in doc["results"]:
        [run] = entry["points"][0]["runs"]
        server = run["server"]
        waves = server["rss_after_waves_kib"]
        assert len(waves) == 3, entry["shape"]
        assert all(kib > 0 for kib in waves), entry["shape"]
        assert waves[0] == server["rss_after_kib"], "the first wave's figure is the measured one"
        assert server["rss_after_last_wave_minus_idle_kib"] == waves[-1] - server["rss_idle_kib"]
        assert run["calls_setup"] == CALLS
        median = entry["points"][0]["median"]
        assert median["rss_after_last_wave_minus_idle_kib"] == server["rss_after_last_wave_minus_idle_kib"]
    assert "after 3 waves" in printed
