"""The side port over real HTTP on 127.0.0.1."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest

from ivr.ops.health import DEFAULT_HEALTH_HOST, DEFAULT_HEALTH_PORT, HealthServer
from ivr.ops.metrics import Metrics


class Flag:
    def __init__(self) -> None:
        self.connected = False

    def __call__(self) -> tuple[bool, str]:
        return self.connected, "ARI disconnected"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def get(http: aiohttp.ClientSession, url: str, **headers: str) -> tuple[int, str, str]:
    async with http.get(url, headers=headers) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.text()


def test_defaults_are_loopback_and_not_node_exporter() -> None:
    server = HealthServer(Metrics())
    assert (server.host, server.port) == (DEFAULT_HEALTH_HOST, DEFAULT_HEALTH_PORT) == ("127.0.0.1", 9464)
    from_setting = HealthServer.from_listen("127.0.0.1:0", Metrics())
    assert (from_setting.host, from_setting.port) == ("127.0.0.1", 0)


async def test_healthz_readyz_and_metrics(http: aiohttp.ClientSession) -> None:
    metrics = Metrics()
    flag = Flag()
    server = HealthServer(metrics, ready=flag, port=0)
    await server.start()
    try:
        assert server.port != 0
        base = server.url
        assert base == f"http://127.0.0.1:{server.port}"

        status, ctype, body = await get(http, base + "/healthz")
        assert status == 200
        assert ctype.startswith("application/json")

        status, _, body = await get(http, base + "/readyz")
        assert status == 503
        assert '"reason": "ARI disconnected"' in body

        flag.connected = True
        status, _, body = await get(http, base + "/readyz")
        assert status == 200
        assert '"ready": true' in body

        metrics.call_started()
        metrics.call_ended("completed")
        metrics.call_started()
        status, ctype, body = await get(http, base + "/metrics")
        assert status == 200
        assert ctype.startswith("text/plain")
        assert "version=" in ctype
        assert "ivr_active_calls 1.0" in body
        assert 'ivr_calls_total{outcome="completed"} 1.0' in body

        status, ctype, body = await get(
            http, base + "/metrics", Accept="application/openmetrics-text; version=1.0.0"
        )
        assert status == 200
        assert ctype.startswith("application/openmetrics-text")
        assert body.rstrip().endswith("# EOF")

        server.drain()
        status, _, body = await get(http, base + "/readyz")
        assert status == 503
        assert "shutting down" in body
        status, _, _ = await get(http, base + "/healthz")
        assert status == 200  # still alive while draining

        status, _, _ = await get(http, base + "/nope")
        assert status == 404
    finally:
        await server.close()
    with pytest.raises(aiohttp.ClientConnectionError):
        await get(http, base + "/healthz")


async def test_ready_without_check_and_with_a_failing_check(http: aiohttp.ClientSession) -> None:
    server = HealthServer(Metrics(), port=0)
    await server.start()
    try:
        status, _, _ = await get(http, server.url + "/readyz")
        assert status == 200

        def broken() -> bool:
            raise RuntimeError("boom")

        server.ready = broken
        status, _, body = await get(http, server.url + "/readyz")
        assert status == 503
        assert "readiness check failed: RuntimeError" in body

        server.ready = lambda: False
        status, _, body = await get(http, server.url + "/readyz")
        assert status == 503
        assert '"reason": "not ready"' in body
    finally:
        await server.close()


async def test_port_in_use_names_the_address() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = HealthServer(Metrics(), port=port)
        with pytest.raises(OSError, match=f"metrics/health port 127.0.0.1:{port}"):
            await server.start()
        await server.close()
