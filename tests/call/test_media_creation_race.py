"""The media channel exists in Asterisk once it handled ``POST /channels/externalMedia``, whether or not its
reply reaches the call: a call stopped while waiting for that reply (its caller hung up) deletes it too,
after the request settled (a DELETE sent first would find nothing). It was left behind, a Down WebSocket
channel waiting for a connection that never comes (the same race the bridge had)."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from ivr.sim import SimAsterisk

from .conftest import DATA, close_stack, hang_up_before_replying, make_stack

pytestmark = pytest.mark.virtual_time


class HangupDuringExternalMedia(SimAsterisk):
    """Creates the media channel, then (before its reply leaves) sees the caller hang up."""

    async def _h_external_media(self, request: web.Request) -> web.Response:
        response = await super()._h_external_media(request)
        await hang_up_before_replying(self)
        return response


@pytest.mark.parametrize("media", ["audiosocket", "websocket"])
async def test_a_caller_who_hangs_up_while_the_media_channel_is_created_leaves_no_channel(media: str) -> None:
    stack = await make_stack(DATA, "menu", media=media, sim_type=HangupDuringExternalMedia)
    try:
        await stack.sim.place_call(args=["flow=menu"])
        await stack.wait_ended()
        [report] = stack.app.reports
        assert report.outcome == "caller_hangup"
        assert ("POST", "/ari/channels/externalMedia") in stack.sim.requests
        await stack.sim.wait_for(lambda: not [c for c in stack.sim.channels.values() if c.kind == "media"], 5)
        stack.assert_clean()
    finally:
        await close_stack(stack)


class RefusesAfterTheCallerLeft(SimAsterisk):
    """Sees the caller hang up while it handles externalMedia, then refuses the request."""

    async def _h_external_media(self, request: web.Request) -> web.Response:
        await hang_up_before_replying(self)
        await asyncio.sleep(0.5)  # the call's teardown is waiting for this answer
        raise web.HTTPServiceUnavailable(text="gone")


async def test_a_media_request_refused_while_the_teardown_waits_for_it_ends_the_call_cleanly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The refusal is that request's answer, and moot by then: the teardown goes on (the bridge destroyed,
    the record written) instead of failing on it ("teardown failed: ServerError(... externalMedia)")."""
    stack = await make_stack(DATA, "menu", sim_type=RefusesAfterTheCallerLeft)
    try:
        await stack.sim.place_call(args=["flow=menu"])
        await stack.wait_ended()
        [report] = stack.app.reports
        assert report.outcome == "caller_hangup"
        assert not [e for e in report.errors if e.startswith("teardown")], report.errors
        assert "teardown failed" not in caplog.text
        await stack.sim.wait_for(lambda: not stack.sim.bridges, 5)
        stack.assert_clean()
    finally:
        await close_stack(stack)


async def test_a_media_channel_of_ours_that_nobody_claims_is_not_taken_for_a_caller() -> None:
    """Its call ended before it entered Stasis (or a previous run left it): a WebSocket media channel is
    not named apart from a caller on chan_websocket, but its id is one this app makes."""
    stack = await make_stack(DATA, "menu", media="websocket")
    try:
        leftover = await stack.sim.place_call(
            tech="WebSocket", channel_id=f"{stack.app.config.media_prefix}x"
        )
        caller = await stack.sim.place_call(args=["flow=menu"])  # the next event: the leftover was handled
        await stack.sim.wait_for(lambda: caller.id in stack.app.calls)
        assert leftover.id not in stack.app.calls
        await stack.sim.hangup(caller.id)
        await stack.wait_ended()
        assert [r.call_id for r in stack.app.reports] == [caller.id]
    finally:
        await close_stack(stack)
