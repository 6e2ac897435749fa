"""The native pacing thread's health on /metrics: its wake-up lateness and skipped periods, read at scrape
time from the real thread."""

from __future__ import annotations

import asyncio
import re
import uuid

from ivr.audiosocket import AudioSocketConfig, AudioSocketServer
from ivr.audiosocket.native import native_available
from ivr.audiosocket.stats import LatencyHistogram
from ivr.ops.metrics import Metrics

from ..audiosocket.peer import AsteriskPeer
from ..services import unavailable

MAX_CATCHUP = 3
"""Frames the native pacer writes at most at one wake-up (``_pacer.Pacer``'s ``max_catchup``)."""


def bucket(text: str, le: str) -> float:
    """The count of the wake-up lateness bucket ``le`` in a Prometheus exposition."""
    pattern = rf'^ivr_pacer_wakeup_lateness_seconds_bucket\{{le="{re.escape(le)}"\}} ([0-9.e+]+)$'
    found = re.search(pattern, text, re.M)
    assert found is not None, le
    return float(found.group(1))


def test_the_pacer_families_come_from_what_the_reader_returns() -> None:
    metrics = Metrics()
    lateness = LatencyHistogram()
    for ms in (0.1, 0.2, 0.4, 3.0, 30.0):
        lateness.record(ms / 1000)
    metrics.watch_pacer(lambda: (lateness, 5, 7, False))
    text = metrics.exposition()[0].decode()
    assert 'ivr_pacer_wakeup_lateness_seconds_bucket{le="+Inf"} 5.0' in text
    assert re.search(r"^ivr_pacer_skipped_periods_total 7\.0$", text, re.M)


async def test_a_running_pacer_reports_its_wake_ups() -> None:
    if not native_available():
        unavailable(
            "native pacer (ivr.audiosocket._pacer)", "pip install -e . with gcc and the Python headers"
        )
    metrics = Metrics()
    async with AudioSocketServer(AudioSocketConfig(port=0, pacer="native")) as server:
        assert server.pacer is not None
        metrics.watch_pacer(server.pacer.clock_stats)
        call_id = uuid.uuid4()
        expectation = server.expect(call_id, "slin16")
        peer = await AsteriskPeer.connect(server.port, call_id)
        await expectation.wait(2)
        await peer.read_frames(10)
        text = metrics.exposition()[0].decode()
        wakeups = bucket(text, "+Inf")
        on_time = bucket(text, "0.02")  # woke within a period: that wake-up wrote one frame
        # A wake-up a period late or more writes the frames it owes at once (up to MAX_CATCHUP, the rest
        # are skipped), so a loaded machine shows fewer wake-ups than frames, never fewer than this:
        assert on_time + MAX_CATCHUP * (wakeups - on_time) >= 10, (wakeups, on_time)
        await peer.close()
        await asyncio.sleep(0)
