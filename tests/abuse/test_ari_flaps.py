"""The ARI events socket killed again and again during live calls: calls go on, nothing is left."""

from __future__ import annotations

import asyncio

from ..call.conftest import DATA, close_stack, make_stack


async def test_repeated_event_socket_kills_during_calls() -> None:
    s = await make_stack(DATA, "patient")
    try:
        assert s.app.stream is not None
        callers = [await s.sim.place_call(args=["flow=patient"]) for _ in range(5)]
        legs = [await s.leg(c.id) for c in callers]
        await asyncio.gather(*(leg.wait_heard("Say sales") for leg in legs))
        for _ in range(4):
            connections = s.app.stream.connections
            await s.sim.kill_event_sockets(abort=True)
            async with asyncio.timeout(15):
                while s.app.stream.connections <= connections:  # noqa: ASYNC110 - client counter
                    await asyncio.sleep(0.05)
        for caller in callers:
            await s.sim.press_dtmf(caller.id, "1")
        await asyncio.gather(*(leg.wait_heard("Sales it is", timeout=15) for leg in legs))
        await s.wait_ended(count=5, timeout=20)
        assert {r.outcome for r in s.app.reports} == {"hangup"}
        s.assert_clean()
    finally:
        await close_stack(s)
