"""REST connections against a real Asterisk's HTTP session limit (http.conf ``sessionlimit``, 100).

Asterisk closes every connection over the limit at once. aiohttp's default pool (100 connections, kept
15 s) let one worker's burst of requests take them all: every request of the other workers and of any other
ARI client failed until they were let go. Each process now keeps its share of ``IVR_ARI_CONNECTIONS``.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from ivr.ari.client import AriClient
from ivr.config import Settings
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
