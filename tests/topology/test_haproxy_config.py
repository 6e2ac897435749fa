"""The shipped deploy/haproxy/haproxy.cfg on a real HAProxy, in front of stand-in instances.

What the configuration promises for per-call sockets, checked without Asterisk: an instance that answers
503 (draining, or at its call limit) or refuses connections (it just died) costs the caller nothing,
because HAProxy retries the handshake on another instance before Asterisk sees a failure; and an
instance whose /readyz fails is taken out.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import HAProxyFactory
from tests.real_haproxy import Backend
from tests.services import free_tcp_port

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def refuse(request: web.Request) -> web.Response:
    return web.Response(status=503, text="draining: taking no new calls")


async def accept(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(protocols=("ari",))
    await ws.prepare(request)
    await ws.close()
    return ws


async def ready(request: web.Request) -> web.Response:
    return web.json_response({"ready": True})


async def not_ready(request: web.Request) -> web.Response:
    return web.json_response({"ready": False}, status=503)


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[int]]]:
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> int:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = free_tcp_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        return port

    yield start
    for runner in runners:
        await runner.cleanup()


async def until_states(proxy: object, expected: dict[str, str]) -> None:
    async with asyncio.timeout(15):
        while proxy.server_states() != expected:  # type: ignore[attr-defined]  # noqa: ASYNC110
            await asyncio.sleep(0.1)


async def handshakes(url: str, count: int) -> list[int]:
    statuses = []
    async with aiohttp.ClientSession() as http:
        for _ in range(count):
            try:
                async with http.ws_connect(url, protocols=("ari",)):
                    statuses.append(101)
            except aiohttp.WSServerHandshakeError as exc:
                statuses.append(exc.status)
    return statuses


@pytest.mark.parametrize("trouble", ["draining", "dead"])
async def test_a_draining_or_dead_instance_costs_no_handshake(
    trouble: str, haproxy_factory: HAProxyFactory, serve: Callable[[Handler], Awaitable[int]]
) -> None:
    health = await serve(ready)  # its readiness still says yes: HAProxy has not noticed yet
    bad = await serve(refuse) if trouble == "draining" else free_tcp_port()  # dead: connects are refused
    proxy = haproxy_factory([Backend("bad", bad, health), Backend("live", await serve(accept), health)])
    await until_states(proxy, {"bad": "UP", "live": "UP"})
    assert await handshakes(proxy.url, 10) == [101] * 10


async def test_an_instance_whose_readiness_fails_gets_no_sockets(
    haproxy_factory: HAProxyFactory, serve: Callable[[Handler], Awaitable[int]]
) -> None:
    up, down = await serve(ready), await serve(not_ready)
    counted: list[str] = []

    def counting(name: str) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            counted.append(name)
            return await accept(request)

        return handle

    a, b = await serve(counting("a")), await serve(counting("b"))
    proxy = haproxy_factory([Backend("a", a, up), Backend("b", b, down)])
    await until_states(proxy, {"a": "UP", "b": "DOWN"})
    assert await handshakes(proxy.url, 6) == [101] * 6
    assert counted == ["a"] * 6
