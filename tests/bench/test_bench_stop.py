"""Stopping ``ivr bench`` with SIGTERM stops the server under test too: none is left running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ivr.bench.procfs import process_tree


def _server_of(bench: int) -> int | None:
    """The bench's ``ivr run --no-ari`` child (not its short-lived prerender or ``--help`` children)."""
    for pid in process_tree(bench)[1:]:
        try:
            if b"--no-ari" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except OSError:
            continue
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return "zombie" not in Path(f"/proc/{pid}/status").read_text()
    except (ProcessLookupError, FileNotFoundError):
        return False


def test_sigterm_stops_the_server_under_test(tmp_path: Path) -> None:
    argv = ["--shapes", "dialplan", "--calls", "3", "--rates", "8000", "--repeat", "1", "--seconds", "60"]
    argv += ["--quiet-wait", "0"]  # a test never waits for the machine to be quiet
    bench = subprocess.Popen(
        [sys.executable, "-m", "ivr", "bench", *argv, "--out", str(tmp_path / "b.json")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    server: int | None = None
    try:
        deadline = time.monotonic() + 90
        while server is None and time.monotonic() < deadline and bench.poll() is None:
            server = _server_of(bench.pid)
            time.sleep(0.1)
        assert server is not None, "the bench started no server"
        time.sleep(1.0)  # let it get going; it must stop whatever it is doing
        bench.send_signal(signal.SIGTERM)
        _, err = bench.communicate(timeout=60)
        assert bench.returncode == 143, err.decode()
        assert "stopped (SIGTERM)" in err.decode()
        assert not _alive(server), "the server under test was left running"
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait()
        if server is not None and _alive(server):
            os.kill(server, signal.SIGKILL)  # never leave it behind, even when the test fails
