"""A burst of ARI callers is set up a few at a time, in arrival order; a caller who waits too long for
its turn is refused with congestion (one busy record), and one who hangs up while waiting leaves
nothing behind. Virtual time: the slow Asterisk is a sleep in the simulator's handler."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from ivr.call.setup_gate import SetupGate, SetupQueueTimeout
from ivr.ops.metrics import Metrics
from ivr.sim.ari_server import SimAsterisk

from .conftest import DATA, close_stack, make_stack

pytestmark = pytest.mark.virtual_time

BRIDGE_S = 1.0
"""How long the simulated Asterisk takes to create each call's bridge."""


async def test_the_gate_lets_through_at_most_its_limit_in_arrival_order() -> None:
    told: list[int] = []
    gate = SetupGate(limit=2, max_wait=30.0, on_waiting=told.append)
    order: list[int] = []
    at_once = 0
    most = 0

    async def set_up(n: int) -> float:
        nonlocal at_once, most
        async with gate.slot() as waited:
            at_once += 1
            most = max(most, at_once)
            order.append(n)
            await asyncio.sleep(1.0)
            at_once -= 1
            return waited

    waits = await asyncio.gather(*(set_up(n) for n in range(6)))
    assert most == 2
    assert order == list(range(6))
    assert waits == pytest.approx([0.0, 0.0, 1.0, 1.0, 2.0, 2.0], abs=0.01)
    assert (gate.running, gate.waiting) == (0, 0)
    assert told == [1, 2, 3, 4, 3, 2, 1, 0]  # four waited, each told as it joined and as it left


async def test_a_caller_waiting_past_max_wait_gets_a_clear_error_and_the_counts_stay_true() -> None:
    gate = SetupGate(limit=1, max_wait=2.0)
    release = asyncio.Event()

    async def holder() -> None:
        async with gate.slot():
            await release.wait()

    held = asyncio.ensure_future(holder())
    await asyncio.sleep(0)
    with pytest.raises(SetupQueueTimeout, match=r"no set-up slot within 2 s \(1 set-ups at once"):
        async with gate.slot():
            pass
    assert (gate.running, gate.waiting) == (1, 0)

    waiter = asyncio.ensure_future(gate.slot().__aenter__())
    await asyncio.sleep(0.5)
    assert gate.waiting == 1
    waiter.cancel()  # the caller hung up while waiting
    await asyncio.gather(waiter, return_exceptions=True)
    assert (gate.running, gate.waiting) == (1, 0)
    release.set()
    await held
    assert (gate.running, gate.waiting) == (0, 0)
    async with gate.slot() as waited:  # the slot the cancelled waiter did not take is free
        assert waited == pytest.approx(0.0, abs=0.01)


async def test_a_burst_of_callers_is_set_up_two_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    real = SimAsterisk._h_create_bridge
    at_once = 0
    most = 0

    async def slow_bridge(self: SimAsterisk, request: web.Request) -> web.Response:
        nonlocal at_once, most
        at_once += 1
        most = max(most, at_once)
        try:
            await asyncio.sleep(BRIDGE_S)
            return await real(self, request)
        finally:
            at_once -= 1

    monkeypatch.setattr(SimAsterisk, "_h_create_bridge", slow_bridge)
    metrics = Metrics()
    stack = await make_stack(DATA, "menu", metrics=metrics, setup_concurrency=2, setup_queue_seconds=30.0)
    try:
        callers = [await stack.sim.place_call(native_format="slin16") for _ in range(6)]
        for caller in callers:
            leg = await stack.leg(caller.id, timeout=10.0)
            await leg.wait_heard("Welcome")
        assert most == 2
        for caller in callers:
            await stack.sim.hangup(caller.id)
        await stack.wait_ended(len(callers))
    finally:
        await close_stack(stack)
    assert sorted(r.call_id for r in stack.app.reports) == sorted(c.id for c in callers)
    assert {r.outcome for r in stack.app.reports} == {"caller_hangup"}
    stack.assert_clean()
    waited = metrics.registry.get_sample_value("ivr_call_setup_wait_seconds_count")
    assert waited == len(callers)
    assert metrics.registry.get_sample_value("ivr_call_setups_waiting") == 0


async def test_a_caller_who_waits_too_long_for_a_slot_is_refused_with_congestion(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = SimAsterisk._h_create_bridge

    async def slow_bridge(self: SimAsterisk, request: web.Request) -> web.Response:
        await asyncio.sleep(2.5)  # under the 3 s step timeout: the first call still sets up
        return await real(self, request)

    monkeypatch.setattr(SimAsterisk, "_h_create_bridge", slow_bridge)
    stack = await make_stack(DATA, "menu", setup_concurrency=1, setup_queue_seconds=1.0)
    try:
        first = await stack.sim.place_call(native_format="slin16", answered=False)
        second = await stack.sim.place_call(native_format="slin16", answered=False)
        await stack.sim.wait_for(lambda: second.id in stack.sim.destroyed, 10)
        leg = await stack.leg(first.id)
        await leg.wait_heard("Welcome")
        await stack.sim.hangup(first.id)
        await stack.wait_ended(2)
    finally:
        await close_stack(stack)
    by_id = {r.call_id: r for r in stack.app.reports}
    assert by_id[first.id].outcome == "caller_hangup"
    refused = by_id[second.id]
    assert refused.outcome == "busy"
    assert "no set-up slot within 1 s" in (refused.reason or "")
    assert stack.sim.destroyed[second.id].hangup_cause == 34  # congestion, as over IVR_MAX_CALLS
    assert stack.sim.destroyed[second.id].state != "Up"  # never answered: it rang, then congestion
    stack.assert_clean()
