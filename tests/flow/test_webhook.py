"""The webhook performer against a real aiohttp test server."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from ivr.flow.actions import HttpRequest
from ivr.flow.events import WebhookFailed, WebhookResult
from ivr.flow.webhook import MAX_RESPONSE_BYTES, perform_request

ServerFactory = Callable[[web.Application], Awaitable[TestServer]]


SEEN: list[dict[str, Any]] = []


@pytest.fixture
async def server(aiohttp_server: ServerFactory) -> TestServer:
    seen = SEEN
    seen.clear()

    async def echo(request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else None
        seen.append(
            {
                "method": request.method,
                "auth": request.headers.get("Authorization"),
                "body": body,
                "query": dict(request.query),
            }
        )
        return web.json_response({"ok": True, "got": body}, status=201)

    async def fail(request: web.Request) -> web.Response:
        return web.json_response({"error": "nope"}, status=503)

    async def text(request: web.Request) -> web.Response:
        return web.Response(text="plain words")

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.json_response({})

    async def huge(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * (MAX_RESPONSE_BYTES + 10))

    app = web.Application()
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/fail", fail)
    app.router.add_get("/text", text)
    app.router.add_get("/slow", slow)
    app.router.add_get("/huge", huge)
    return await aiohttp_server(app)


def _req(server: TestServer, path: str, **kw: Any) -> HttpRequest:
    kw.setdefault("method", "GET")
    return HttpRequest(step="s", url=str(server.make_url(path)), **kw)


async def test_post_json_with_headers(server: TestServer) -> None:
    request = _req(
        server,
        "/echo?x=1",
        method="POST",
        headers={"Authorization": "Bearer sekrit"},
        json_body={"pin": "1234", "n": 2},
        secrets=("sekrit",),
    )
    async with aiohttp.ClientSession() as session:
        result = await perform_request(session, request)
    assert result == WebhookResult(201, {"ok": True, "got": {"pin": "1234", "n": 2}})
    assert SEEN == [
        {"method": "POST", "auth": "Bearer sekrit", "body": {"pin": "1234", "n": 2}, "query": {"x": "1"}}
    ]


async def test_error_status_and_text_body(server: TestServer) -> None:
    async with aiohttp.ClientSession() as session:
        assert await perform_request(session, _req(server, "/fail")) == WebhookResult(503, {"error": "nope"})
        assert await perform_request(session, _req(server, "/text")) == WebhookResult(200, "plain words")


async def test_timeout_and_oversized_response(server: TestServer) -> None:
    async with aiohttp.ClientSession() as session:
        result = await perform_request(session, _req(server, "/slow", timeout_ms=200))
        assert result == WebhookFailed("timeout after 200 ms")
        result = await perform_request(session, _req(server, "/huge"))
        assert isinstance(result, WebhookFailed)
        assert "larger than" in result.reason


async def test_connection_error_does_not_leak_secrets() -> None:
    request = HttpRequest(
        step="s", method="GET", url="http://127.0.0.1:9/x?token=sekrit", secrets=("sekrit",)
    )
    async with aiohttp.ClientSession() as session:
        result = await perform_request(session, request)
    assert isinstance(result, WebhookFailed)
    assert "sekrit" not in result.reason
