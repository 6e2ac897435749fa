"""``ivr run --workers N`` with WebSocket media: in ARI mode every worker connects its own calls' media
to Asterisk's ``/media/<id>``; in dialplan-only mode the workers share the WebSocket media port
(``SO_REUSEPORT``) and the kernel spreads the calls Asterisk dials over them. Real worker processes,
the real clock, timeouts only."""

from __future__ import annotations

import asyncio

from ivr.audiosocket.clock import FrameClock, LoopClock
from ivr.sim.ari_server import SimAsterisk
from ivr.sim.caller_leg import CallerLegs
from ivr.sim.ws_media import WebSocketMediaLeg, dial, talking_legs
from tests.services import free_tcp_port

from .test_supervisor import _until, records, running, settings

PASSWORD = "media-secret-0123"


async def test_ari_calls_over_websocket_media_spread_over_workers() -> None:
    legs = CallerLegs()
    sim = SimAsterisk(
        username="ivr", password="pw", media_connector=legs.connect, websocket_legs=talking_legs(legs)
    )
    async with sim:
        s = settings(IVR_ARI_URL=sim.base_url, IVR_MEDIA="websocket")
        async with running(s, workers=2) as supervisor:

            async def one_call() -> str:
                caller = await sim.place_call()
                await sim.wait_for(lambda: legs.for_caller(sim, caller.id) is not None, 20)
                leg = legs.for_caller(sim, caller.id)
                assert isinstance(leg, WebSocketMediaLeg)
                await leg.wait_heard("Say sales", timeout=20)
                await sim.press_dtmf(caller.id, "1")
                await leg.wait_heard("Sales it is", timeout=20)
                await sim.wait_for(lambda: caller.id in sim.destroyed, 20)
                return caller.id

            callers = await asyncio.gather(*(one_call() for _ in range(6)))
            await asyncio.wait_for(_until(lambda: not any(supervisor.live)), 10)
        media = [cid for cid in sim.destroyed if "-media-" in cid]
        assert {cid.split("-")[1] for cid in media} == {"w0", "w1"}, "both workers served calls"
        assert not sim.bridges
        assert [(c, o) for c, o, _ in records(s)] == [(c, "hangup") for c in sorted(callers)]


async def test_dialplan_only_workers_share_the_websocket_media_port() -> None:
    port = free_tcp_port()
    s = settings(
        IVR_MEDIA="websocket",
        IVR_MEDIA_WEBSOCKET_LISTEN=f"127.0.0.1:{port}",
        IVR_MEDIA_WEBSOCKET_PASSWORD=PASSWORD,
    )
    clock = FrameClock(LoopClock())
    try:
        async with running(s, workers=2, no_ari=True) as supervisor:
            url = f"ws://127.0.0.1:{port}/media"
            calls = [await dial(url, username="ivr-media", password=PASSWORD, clock=clock) for _ in range(16)]
            await asyncio.gather(*(leg.wait_heard("Say sales", timeout=20) for leg in calls))
            busy = [len(w) for w in supervisor.live]
            assert all(n > 0 for n in busy), f"the kernel spread 16 calls over both workers: {busy}"
            for leg in calls:
                await leg.send_dtmf("1")
            await asyncio.gather(*(leg.wait_closed() for leg in calls))
            for leg in calls:
                await leg.close()
            await asyncio.wait_for(_until(lambda: not any(supervisor.live)), 10)
    finally:
        clock.close()
    assert [o for _, o, _ in records(s)] == ["hangup"] * 16
