"""Junk on the metrics/health port costs one WARNING line per request (rate-limited), never a traceback,
and the process keeps serving."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from ivr.logs import LOG_BURST
from ivr.ops.health import HealthServer
from ivr.ops.metrics import Metrics

_rng = random.Random(7)
JUNK = [
    _rng.randbytes(300),  # not HTTP at all
    b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + _rng.randbytes(100),  # a TLS hello
    b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n",  # a huge header
    b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",  # a huge request line
    b"GET /healthz HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(200)) + b"\r\n",  # many headers
    b"POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",  # bad chunking
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    b"GET /healthz HTTP/9.9\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n",
    b"\x00" * 64 + b"\r\n\r\n",
]


async def _send(port: int, junk: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(junk)
        await writer.drain()
        return await asyncio.wait_for(reader.read(4096), 5)
    except ConnectionError:
        return b""
    finally:
        writer.close()


@pytest.fixture
async def health() -> AsyncIterator[HealthServer]:
    server = HealthServer(Metrics(), port=0)
    await server.start()
    yield server
    await server.close()


async def test_each_junk_request_is_one_warning_with_the_peer(
    health: HealthServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with asyncio.timeout(60):
        for junk in JUNK:
            caplog.clear()
            reply = await _send(health.port, junk)
            assert reply.startswith(b"HTTP/1.") or reply == b"", reply[:80]
            await asyncio.sleep(0.05)
            noisy = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
            assert noisy == [], f"{junk[:40]!r}: {[r.getMessage() for r in noisy]}"
            warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
            assert len(warnings) == 1, (junk[:40], warnings)
            assert warnings[0].startswith("metrics port: bad request from 127.0.0.1: "), warnings
            assert len(warnings[0]) < 200
            assert warnings[0].isprintable()
        async with aiohttp.ClientSession() as http, http.get(f"{health.url}/healthz") as response:
            assert response.status == 200


async def test_a_body_on_a_get_is_bounded(health: HealthServer) -> None:
    async with asyncio.timeout(30), aiohttp.ClientSession() as http:
        async with http.post(f"{health.url}/healthz", data=b"x" * 100_000) as response:
            assert response.status in (405, 413)
        async with http.get(f"{health.url}/healthz") as response:
            assert response.status == 200


def test_ivr_run_logs_a_burst_then_a_summary_and_stays_up(tmp_path: Path) -> None:
    """The real process: 50 junk requests, then it still answers; on SIGTERM it says how many it hid."""
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "hi.yaml").write_text(
        "name: hi\nstart: hi\nsteps:\n  hi:\n    say: Hi.\n    next: bye\n  bye:\n    hangup:\n"
    )
    env = {
        **os.environ,
        "IVR_FLOWS": str(flows),
        "IVR_DEFAULT_FLOW": "hi",
        "IVR_AUDIOSOCKET_LISTEN": "127.0.0.1:0",
        "IVR_METRICS_LISTEN": "127.0.0.1:0",
        "IVR_PROMPT_CACHE": "",
        "IVR_RECORDS_PATH": str(tmp_path / "calls.sqlite3"),
    }
    log_path = tmp_path / "stderr.log"
    with log_path.open("w") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "ivr", "run", "--no-ari"], stderr=log_file, env=env)
    try:
        port = asyncio.run(_junk_and_check(log_path, proc))
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    text = log_path.read_text()
    assert code == 0, text
    assert "Traceback" not in text
    bad = [line for line in text.splitlines() if "bad request from 127.0.0.1" in line]
    assert len(bad) == LOG_BURST, text
    assert all(" WARNING ivr.ops.health: metrics port: bad request from 127.0.0.1: " in line for line in bad)
    [summary] = [line for line in text.splitlines() if "similar lines suppressed" in line]
    assert f"{50 - LOG_BURST} similar lines suppressed" in summary, summary
    assert port > 0


def _metrics_port(log_path: Path) -> int | None:
    found = re.search(r"metrics and health on http://127\.0\.0\.1:(\d+)", log_path.read_text())
    return int(found.group(1)) if found else None


async def _junk_and_check(log_path: Path, proc: subprocess.Popen[bytes]) -> int:
    async with asyncio.timeout(90):
        while (port := _metrics_port(log_path)) is None:
            assert proc.poll() is None, "ivr run exited before it was ready"
            await asyncio.sleep(0.1)
        for i in range(50):
            await _send(port, JUNK[i % len(JUNK)])
        assert proc.poll() is None, "still running"
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/healthz") as response:
            assert response.status == 200
    return port
