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
        found = re.search(r'^ivr_pacer_wakeup_lateness_seconds_bucket\{le="\+Inf"\} ([0-9.]+)$', text, re.M)
        assert found is not None
        assert float(found.group(1)) >= 10, "one wake-up per frame at least"
        await peer.close()
        await asyncio.sleep(0)
