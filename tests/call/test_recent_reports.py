"""A serving process keeps only a few finished calls' reports in memory (its records hold them all), so
RSS can go back towards idle once calls end; embedders (tests, the simulator) keep more."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from ivr.audiosocket.server import AudioSocketConfig, AudioSocketServer
from ivr.call.dialplan_app import DialplanApp
from ivr.call.flows import FlowCatalog
from ivr.call.report import RECENT_REPORTS
from ivr.call.services import CallServices
from ivr.sim.caller_leg import CallerLegs
from ivr.workers.process import SERVING_RECENT_REPORTS

from .conftest import DATA, sim_speech

pytestmark = pytest.mark.virtual_time


async def test_the_app_keeps_the_newest_reports_it_was_told_to() -> None:
    finished: list[str] = []
    services = CallServices(
        flows=FlowCatalog(DATA, default="menu"),
        speech=sim_speech(),
        recent_reports=2,
        on_report=lambda report: finished.append(report.call_id),
    )
    app = DialplanApp(services=services)
    server = AudioSocketServer(AudioSocketConfig(port=0, idle_timeout=5.0), on_session=app.handle)
    async with server:
        legs = CallerLegs()
        for i in range(3):
            leg = await legs.connect("127.0.0.1", server.port, uuid.uuid4(), "slin", f"AudioSocket-{i}")
            await leg.wait_heard("Say sales")
            await leg.close()
            await leg.wait_closed()
        async with asyncio.timeout(5):
            while len(finished) < 3:  # noqa: ASYNC110 - the records sink is a plain callback
                await asyncio.sleep(0.05)
    assert len(finished) == 3, "every call still reaches the records sink"
    assert [r.call_id for r in app.reports] == finished[1:]
    assert SERVING_RECENT_REPORTS < RECENT_REPORTS
