"""A call's set-up: the flow is decided while the media is set up, and audio from before the call
listens is pre-roll (the newest second kept, the rest counted apart), never a slow consumer's drops."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from ivr.sim.ari_server import SimAsterisk
from ivr.transport import AudioIn, InboundQueue, MediaClosed

from .conftest import DATA, close_stack, make_stack

pytestmark = pytest.mark.virtual_time

FLOW_LOOKUP_S = 1.0
MEDIA_STASIS_S = 1.0


async def test_the_flow_is_decided_while_the_media_is_set_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """The IVR_FLOW lookup (a REST round trip, slow under a burst of set-ups) overlaps the media set-up,
    so the greeting starts when the slower of the two is done, not after both in turn."""
    real = SimAsterisk._h_get_var
    looked_up: list[str] = []

    async def slow_flow_lookup(self: SimAsterisk, request: web.Request) -> web.Response:
        if request.query.get("variable") == "IVR_FLOW":
            looked_up.append(request.match_info["id"])
            await asyncio.sleep(FLOW_LOOKUP_S)
        return await real(self, request)

    monkeypatch.setattr(SimAsterisk, "_h_get_var", slow_flow_lookup)
    stack = await make_stack(DATA, "menu")
    stack.sim.media_stasis_delay = MEDIA_STASIS_S
    loop = asyncio.get_running_loop()
    try:
        placed = loop.time()
        caller = await stack.sim.place_call(native_format="slin16")  # no flow argument: IVR_FLOW is asked
        leg = await stack.leg(caller.id)
        await leg.wait_heard("Welcome")
        greeting_s = loop.time() - placed
        await stack.sim.hangup(caller.id)
        await stack.wait_ended()
    finally:
        await close_stack(stack)
    [report] = stack.app.reports
    assert looked_up == [caller.id]
    assert report.flow == "menu"
    # one after the other: over 2 s to the greeting heard; overlapped: the slower (1 s) and the rest
    assert greeting_s < FLOW_LOOKUP_S + MEDIA_STASIS_S - 0.3, greeting_s


async def test_a_failed_set_up_leaves_no_flow_lookup_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    """The media set-up fails while the flow is still being looked up: the lookup is cancelled with the
    call (the stack's fixture fails on any task left running) and the call ends in one error record."""
    real = SimAsterisk._h_get_var

    async def slow_flow_lookup(self: SimAsterisk, request: web.Request) -> web.Response:
        if request.query.get("variable") == "IVR_FLOW":
            await asyncio.sleep(30)
        return await real(self, request)

    async def no_bridge(self: SimAsterisk, request: web.Request) -> web.Response:
        raise web.HTTPInternalServerError(text="bridge refused")

    monkeypatch.setattr(SimAsterisk, "_h_get_var", slow_flow_lookup)
    monkeypatch.setattr(SimAsterisk, "_h_create_bridge", no_bridge)
    stack = await make_stack(DATA, "menu")
    try:
        caller = await stack.sim.place_call(native_format="slin16")
        await stack.wait_ended()
    finally:
        await close_stack(stack)
    [report] = stack.app.reports
    assert report.outcome == "error"
    assert "bridge" in (report.reason or "")
    assert caller.id in stack.sim.destroyed


def _audio(n: int) -> list[AudioIn]:
    return [AudioIn(8000, bytes([i % 256]) * 320) for i in range(n)]


def test_audio_before_anyone_listens_is_preroll_not_drops() -> None:
    queue = InboundQueue(max_audio=50)
    for frame in _audio(80):
        queue.put(frame)
    assert queue.dropped_audio == 0
    assert queue.preroll_discarded == 30
    kept = [queue.get_nowait() for _ in range(50)]
    assert [f.payload[0] for f in kept if isinstance(f, AudioIn)] == list(range(30, 80)), (
        "the newest, in order"
    )
    assert queue.get_nowait() is None


def test_once_a_consumer_listened_an_overflow_is_a_drop() -> None:
    queue = InboundQueue(max_audio=50)
    queue.sink = lambda payload: None
    queue.sink = None  # back to events: a consumer that falls behind now loses audio it wanted
    for frame in _audio(60):
        queue.put(frame)
    assert queue.dropped_audio == 10
    assert queue.preroll_discarded == 0


def test_measured_frames_have_a_direct_route_only_while_put_audio_would_deliver_them() -> None:
    queue = InboundQueue(max_audio=50)
    got: list[tuple[bytes, float]] = []

    def measured(payload: bytes, level: float) -> None:
        got.append((payload, level))

    def route() -> object:  # read afresh each time (no narrowing across the steps below)
        return queue.measured_route

    queue.measured = measured
    assert route() is None, "no consumer yet: put_audio queues (pre-roll)"
    queue.sink = lambda payload: None
    assert route() is measured
    queue.put_audio(8000, b"\x01\x00", -20.0)
    assert got == [(b"\x01\x00", -20.0)], "the route is where put_audio sends the frame"
    queue.sink = None
    assert route() is None
    queue.sink = lambda payload: None
    queue.put(MediaClosed("hangup"))
    assert route() is None, "nothing is accepted after MediaClosed"
