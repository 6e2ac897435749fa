"""The app as the client of Asterisk's /media/<id>: refusals come back as clear errors."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
from aiohttp import WSMsgType, web

from ivr.websocket.client import MediaConnectError, WebSocketMediaClient


@contextlib.asynccontextmanager
async def fake_asterisk(first: str | None) -> AsyncIterator[str]:
    """Answers like chan_websocket: 404 for an unknown id, 409 for a second connection, then MEDIA_START."""
    connected: set[str] = set()

    async def media(request: web.Request) -> web.StreamResponse:
        cid = request.match_info["cid"]
        if cid != "c0ffee":
            return web.Response(status=404, text="WebSocket instance not found")
        if cid in connected:
            return web.Response(status=409, text="Another websocket connection exists for this connection id")
        connected.add(cid)
        ws = web.WebSocketResponse(protocols=("media",))
        await ws.prepare(request)
        assert ws.ws_protocol == "media"
        if first is not None:
            await ws.send_str(first)
        async for msg in ws:
            if msg.type is WSMsgType.TEXT and msg.data == "HANGUP":
                await ws.close()
        return ws

    app = web.Application()
    app.router.add_get("/media/{cid}", media)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/ari"
    finally:
        await runner.cleanup()


START = "MEDIA_START connection_id:c0ffee channel:WebSocket/INCOMING/0x1 channel_id:m format:slin16 optimal_frame_size:640 ptime:20"


async def test_connect_waits_for_media_start_and_owns_the_session() -> None:
    async with fake_asterisk(START) as url, WebSocketMediaClient(url) as client:
        assert client.media_url.endswith("/media/")
        assert "/ari" not in client.media_url
        session = await client.connect("c0ffee")
        assert session.rate == 16000
        assert session.frame_size == 640
        assert session in client.sessions
        with pytest.raises(MediaConnectError, match="409 it is already connected"):
            await client.connect("c0ffee")
    assert session.closed
    assert not client.sessions


async def test_an_unknown_connection_id_is_a_404_that_says_so() -> None:
    async with fake_asterisk(START) as url, WebSocketMediaClient(url) as client:
        with pytest.raises(MediaConnectError, match="404 no WebSocket channel waits for it"):
            await client.connect("deadbeef")


async def test_no_media_start_or_a_wrong_one_is_an_error() -> None:
    async with fake_asterisk(None) as url, WebSocketMediaClient(url) as client:
        with pytest.raises(MediaConnectError, match="no MEDIA_START"):
            await client.connect("c0ffee", timeout=0.1)
    async with fake_asterisk("MEDIA_XON") as url, WebSocketMediaClient(url) as client:
        with pytest.raises(MediaConnectError, match="not MEDIA_START"):
            await client.connect("c0ffee")


async def test_a_connection_id_cannot_reach_another_path() -> None:
    async with WebSocketMediaClient("http://127.0.0.1:1") as client:
        with pytest.raises(ValueError, match="connection id"):
            await client.connect("../ari/channels")


async def test_nobody_listening_is_a_connect_error() -> None:
    async with WebSocketMediaClient("http://127.0.0.1:1") as client:
        with pytest.raises(MediaConnectError, match="failed"):
            await client.connect("c0ffee", timeout=2)


async def test_more_than_a_hundred_live_connections_from_one_client() -> None:
    """Each call's media is a long-lived connection of the process's one client: aiohttp's default pool
    (100 connections) would make the 101st call wait for a free slot until its setup step timed out."""
    from ivr.ari.client import AriClient
    from ivr.sim.ari_server import SimAsterisk

    async with (
        SimAsterisk(username="u", password="p") as sim,
        AriClient(sim.base_url, "u", "p") as ari,
        WebSocketMediaClient(sim.base_url) as client,
    ):
        sessions = []
        for n in range(101):
            channel = await ari.external_media(
                app="t",
                external_host="",
                encapsulation="none",
                transport="websocket",
                connection_type="server",
                format="slin16",
                channel_id=f"m{n}",
            )
            connection = channel.channelvars["MEDIA_WEBSOCKET_CONNECTION_ID"]
            sessions.append(await client.connect(connection, timeout=2.0))
        assert len(client.sessions) == 101
        assert all(not s.closed for s in sessions)
