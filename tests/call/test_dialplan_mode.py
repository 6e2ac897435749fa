"""Dialplan-only mode: a caller leg dials the AudioSocket server directly, as AudioSocket() does."""

from __future__ import annotations

import uuid

from ivr.audiosocket.server import AudioSocketConfig, AudioSocketServer
from ivr.call.dialplan_app import DialplanApp
from ivr.call.flows import FlowCatalog
from ivr.sim.caller_leg import CallerLegs

from .conftest import DATA, sim_speech


async def test_audiosocket_app_call_runs_the_default_flow_at_8k() -> None:
    app = DialplanApp(flows=FlowCatalog(DATA, default="menu"), speech=sim_speech())
    server = AudioSocketServer(AudioSocketConfig(port=0, idle_timeout=5.0), on_session=app.handle)
    async with server:
        legs = CallerLegs()
        leg = await legs.connect("127.0.0.1", server.port, uuid.uuid4(), "slin", "AudioSocket-1")
        assert leg.rate == 8000
        await leg.wait_heard("Say sales")
        await leg.send_dtmf("2")  # DTMF comes over the socket in this mode
        await leg.wait_heard("Support it is")
        await leg.wait_closed()
        assert leg.hangup_received, "the app ends the call with a hangup message, then closes"
        await leg.close()
        [report] = app.reports
        assert report.outcome == "hangup"
        assert report.dtmf == ["2"]
        gaps = [b - a for a, b in zip(leg.arrivals, leg.arrivals[1:], strict=False)]
        assert max(gaps) < 2.0, "never 2 s without a frame: AudioSocket() would hang up"
        assert not server.sessions
