"""REST and media connections against a real Asterisk's HTTP session limit (http.conf ``sessionlimit``,
100 by default), which counts every connection of every client, WebSockets included.

Asterisk closes every connection over the limit at once. aiohttp's default pool (100 connections, kept
15 s) let one worker's burst of requests take them all: every request of the other workers and of any other
ARI client failed until they were let go. Each process now keeps its share of ``IVR_ARI_CONNECTIONS``; and
when Asterisk is full anyway (WebSocket media calls hold a session each), the errors say so.
"""

from __future__ import annotations

import asyncio
import base64
from collections import Counter

import aiohttp
import pytest

from ivr.ari.client import AriClient
from ivr.ari.errors import AriConnectionError
from ivr.config import Settings
from ivr.websocket.client import MediaConnectError, WebSocketMediaClient
from ivr.workers.supervisor import ari_share
from tests.conftest import AsteriskFactory

BURST = 300


async def burst(client: AriClient) -> Counter[str]:
    async def one() -> str:
        try:
            await client.asterisk_info()
        except Exception as exc:
            return type(exc).__name__
        return "ok"

    return Counter(await asyncio.gather(*(one() for _ in range(BURST))))


async def test_a_burst_in_every_process_leaves_asterisks_sessions_to_the_others(
    asterisk_factory: AsteriskFactory,
) -> None:
    asterisk = asterisk_factory()  # its own: a failure here must not lock the shared one's sessions
    default = Settings.model_fields["ari_connections"].default
    share = ari_share(default, 3)  # two workers and their supervisor
    clients = [
        AriClient(asterisk.http_url, asterisk.user, asterisk.password, connections=share) for _ in range(3)
    ]
    try:
        results = await asyncio.gather(*(burst(c) for c in clients))
        assert results == [Counter(ok=BURST)] * 3, f"every process's requests answered: {results}"
        async with AriClient(asterisk.http_url, asterisk.user, asterisk.password) as other:
            assert (await other.asterisk_info()).version, "another ARI client still gets in"
    finally:
        for client in clients:
            await client.close()


async def test_a_full_asterisk_is_named_in_the_errors(asterisk_factory: AsteriskFactory) -> None:
    """Every session taken (here by idle events sockets; in production by WebSocket media calls): a REST
    request and a media connection fail with a line that says where to look, not a bare disconnect."""
    asterisk = asterisk_factory()
    token = base64.b64encode(f"{asterisk.user}:{asterisk.password}".encode()).decode()
    events = f"{asterisk.http_url.replace('http://', 'ws://')}/ari/events"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        held: list[aiohttp.ClientWebSocketResponse] = []
        try:
            while True:  # until Asterisk turns one away: it is full
                try:
                    held.append(
                        await http.ws_connect(
                            f"{events}?app=full{len(held)}", headers={"Authorization": f"Basic {token}"}
                        )
                    )
                except aiohttp.ServerDisconnectedError:
                    break
                assert len(held) <= 1000, "no session limit?"
            async with AriClient(asterisk.http_url, asterisk.user, asterisk.password) as ari:
                with pytest.raises(AriConnectionError, match="sessionlimit"):
                    await ari.asterisk_info()
            async with WebSocketMediaClient(asterisk.http_url) as media:
                with pytest.raises(MediaConnectError, match="sessionlimit"):
                    await media.connect("any-connection", timeout=5)
        finally:
            for ws in held:
                await ws.close()
