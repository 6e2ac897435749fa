"""``ivr run`` (the real ``serve()``) with WebSocket media: ARI mode against the simulated Asterisk, the
dialplan-only WebSocket media server, and the one-line refusals at startup."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from ivr.audiosocket.clock import FrameClock, LoopClock
from ivr.call.report import CallReport
from ivr.config import Settings
from ivr.sim.ari_server import SimAsterisk
from ivr.sim.caller_leg import CallerLeg, CallerLegs, CallerVoice
from ivr.sim.ws_media import WebSocketMediaLeg, dial, talking_legs
from ivr.workers.process import StartupError, serve

from .test_ivr_run import settings_for

PASSWORD = "media-secret-0123"


@contextlib.asynccontextmanager
async def serving(
    settings: Settings, *, no_ari: bool = False
) -> AsyncIterator[tuple[dict[str, Any], list[CallReport]]]:
    stop, ready = asyncio.Event(), asyncio.Event()
    info: dict[str, Any] = {}
    reports: list[CallReport] = []

    def on_ready(given: dict[str, Any]) -> None:
        info.update(given)
        ready.set()

    task = asyncio.create_task(
        serve(settings, no_ari=no_ari, stop=stop, ready=on_ready, on_report=reports.append)
    )
    waiter = asyncio.ensure_future(ready.wait())
    await asyncio.wait({task, waiter}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if task.done():
        task.result()
    try:
        yield info, reports
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 15) == 0


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():  # noqa: ASYNC110 - the app's state, no event
            await asyncio.sleep(0.05)


def sim_with_legs() -> tuple[SimAsterisk, CallerLegs]:
    legs = CallerLegs()
    sim = SimAsterisk(
        username="ivr", password="pw", media_connector=legs.connect, websocket_legs=talking_legs(legs)
    )
    return sim, legs


async def leg_of(sim: SimAsterisk, legs: CallerLegs, caller_id: str) -> CallerVoice:
    await sim.wait_for(lambda: legs.for_caller(sim, caller_id) is not None, 10)
    leg = legs.for_caller(sim, caller_id)
    assert leg is not None
    return leg


async def test_ivr_media_websocket_serves_ari_calls_over_websocket_media() -> None:
    sim, legs = sim_with_legs()
    async with sim, serving(settings_for(sim, IVR_MEDIA="websocket")) as (info, reports):
        assert info["media"] == "websocket"
        caller = await sim.place_call()
        leg = await leg_of(sim, legs, caller.id)
        assert isinstance(leg, WebSocketMediaLeg)
        await leg.wait_heard("Say sales")
        await sim.press_dtmf(caller.id, "1")
        await leg.wait_heard("Sales it is")
        await sim.wait_for(lambda: caller.id in sim.destroyed, 10)
        await until(lambda: bool(reports))
        assert reports[0].dtmf == ["1"]
        assert not sim.bridges
        assert not [c for c in sim.channels.values() if c.kind == "media"]


async def test_ivr_media_websocket_on_an_asterisk_without_mark_media_is_one_line() -> None:
    sim, _ = sim_with_legs()
    sim.version = "22.7.0"
    async with sim:
        with pytest.raises(StartupError) as refused:
            await serve(settings_for(sim, IVR_MEDIA="websocket"))
        assert "22.8" in str(refused.value)
        assert "22.7.0" in str(refused.value)
        assert "\n" not in str(refused.value)


async def test_with_an_old_asterisk_a_call_asking_for_websocket_gets_audiosocket(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sim, legs = sim_with_legs()
    sim.version = "20.17.0"
    caplog.set_level(logging.INFO)
    async with sim, serving(settings_for(sim)):
        assert "has no MARK_MEDIA" in caplog.text
        caller = await sim.place_call(args=["media=websocket"])
        leg = await leg_of(sim, legs, caller.id)
        assert isinstance(leg, CallerLeg), "AudioSocket: the call still works"
        await leg.wait_heard("Say sales")
        assert "media 'websocket' not available here" in caplog.text
        await sim.hangup(caller.id)


async def test_dialplan_only_mode_serves_dial_websocket_calls(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    settings = settings_for(
        SimAsterisk(),
        IVR_MEDIA="websocket",
        IVR_MEDIA_WEBSOCKET_LISTEN="127.0.0.1:0",
        IVR_MEDIA_WEBSOCKET_PASSWORD=PASSWORD,
    )
    clock = FrameClock(LoopClock())
    async with serving(settings, no_ari=True) as (info, reports):
        host, port = info["websocket"]
        leg = await dial(f"ws://{host}:{port}/media", username="ivr-media", password=PASSWORD, clock=clock)
        await leg.wait_heard("Say sales")
        await leg.send_dtmf("1")
        await leg.wait_heard("Sales it is")
        await leg.wait_closed()
        await leg.close()
        await until(lambda: bool(reports))
        assert reports[0].outcome == "hangup"
        assert reports[0].dtmf == ["1"]
    clock.close()
    assert PASSWORD not in caplog.text, "the media password is never logged"


async def test_dialplan_websocket_media_needs_its_password() -> None:
    settings = settings_for(SimAsterisk(), IVR_MEDIA="websocket")
    with pytest.raises(StartupError) as refused:
        await serve(settings, no_ari=True)
    assert "IVR_MEDIA_WEBSOCKET_PASSWORD" in str(refused.value)
