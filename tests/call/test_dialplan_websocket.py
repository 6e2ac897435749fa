"""Dialplan-only mode over WebSocket media: Asterisk dials the app (``Dial(WebSocket/<entry>/c(slin16))``),
played by the simulator's chan_websocket client, and the default flow runs as for AudioSocket calls."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest

from ivr.audiosocket.clock import FrameClock, LoopClock
from ivr.call.dialplan_app import DialplanApp
from ivr.call.flows import FlowCatalog
from ivr.call.services import CallServices
from ivr.ops.metrics import Metrics
from ivr.sim.ws_media import dial
from ivr.websocket import WebSocketMediaServer, WebSocketServerConfig

from .conftest import DATA, sim_speech

pytestmark = pytest.mark.virtual_time

USER, PASSWORD = "ivr-media", "test-media-secret"


@pytest.fixture
async def clock() -> AsyncIterator[FrameClock]:
    frame_clock = FrameClock(LoopClock())
    yield frame_clock
    frame_clock.close()


def dialplan_app(metrics: Metrics | None = None) -> DialplanApp:
    return DialplanApp(
        services=CallServices(flows=FlowCatalog(DATA, default="menu"), speech=sim_speech(), metrics=metrics)
    )


async def test_a_dialled_websocket_call_runs_the_default_flow(clock: FrameClock) -> None:
    metrics = Metrics()
    app = dialplan_app(metrics)
    config = WebSocketServerConfig(port=0, username=USER, password=PASSWORD)
    async with WebSocketMediaServer(config, on_session=app.handle_websocket) as server:
        url = f"ws://127.0.0.1:{server.port}/media"
        leg = await dial(url, username=USER, password=PASSWORD, clock=clock, channel_id="ws-call-1")
        await leg.wait_heard("Say sales")
        await leg.send_dtmf("2")  # DTMF_END: the one source of keys in this mode
        await leg.wait_heard("Support it is")
        await leg.wait_heard("Goodbye")
        await leg.wait_closed()
        assert leg.hangup_received, "the flow's hangup is chan_websocket's HANGUP"
        await leg.close()
        [report] = app.reports
        assert report.call_id == "ws-call-1"
        assert report.outcome == "hangup"
        assert report.dtmf == ["2"]
        assert report.path[:3] == ["hello", "main", "support"]
        assert leg.error is None
        assert leg.stalls == 0
        assert leg.heard_texts()[0] == "Welcome to the test line.", "16 kHz from the first frame"
        assert not server.sessions
        assert not app.runtimes


async def test_the_caller_hanging_up_ends_the_call_with_one_record(clock: FrameClock) -> None:
    app = dialplan_app()
    config = WebSocketServerConfig(port=0, username=USER, password=PASSWORD)
    async with WebSocketMediaServer(config, on_session=app.handle_websocket) as server:
        url = f"ws://127.0.0.1:{server.port}/media"
        leg = await dial(url, username=USER, password=PASSWORD, clock=clock, fmt="slin")
        assert leg.rate == 8000
        await leg.wait_heard("Welcome")
        await leg.close()  # Asterisk's channel hangs up: it closes the socket
        async with asyncio.timeout(5):
            while not app.reports:  # noqa: ASYNC110 - the app's state, no event
                await asyncio.sleep(0.02)
        [report] = app.reports
        assert report.outcome == "caller_hangup"
        assert not server.sessions


async def test_wrong_credentials_are_refused_with_one_line(
    clock: FrameClock, caplog: pytest.LogCaptureFixture
) -> None:
    app = dialplan_app()
    config = WebSocketServerConfig(port=0, username=USER, password=PASSWORD)
    async with WebSocketMediaServer(config, on_session=app.handle_websocket) as server:
        caplog.set_level(logging.WARNING, logger="ivr.websocket")
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await dial(f"ws://127.0.0.1:{server.port}/media", username=USER, password="guess", clock=clock)
        assert refused.value.status == 401
        lines = [r.getMessage() for r in caplog.records if r.name.startswith("ivr.websocket")]
        assert len(lines) == 1
        assert "missing or wrong credentials" in lines[0]
        assert PASSWORD not in caplog.text
        assert not app.reports
