"""The webhook performer against a real aiohttp test server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from ivr.config import ConfigError, load_settings
from ivr.flow.actions import HttpRequest
from ivr.flow.events import WebhookFailed, WebhookResult
from ivr.flow.webhook import MAX_RESPONSE_BYTES, WebhookClient, perform_request
from ivr.webhook_policy import WebhookPolicy, address_kind, parse_address

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

    async def bad_charset(request: web.Request) -> web.Response:
        return web.Response(body=b"caf\xe9", headers={"Content-Type": "text/plain; charset=no-such-codec"})

    app = web.Application()
    app.router.add_get("/bad-charset", bad_charset)
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/fail", fail)
    app.router.add_get("/text", text)
    app.router.add_get("/slow", slow)
    app.router.add_get("/huge", huge)
    return await aiohttp_server(app)


@pytest.fixture
async def webhooks() -> AsyncIterator[WebhookClient]:
    """The test server listens on loopback, which only an explicit allow-list entry opens."""
    async with WebhookClient(WebhookPolicy.parse("127.0.0.0/8")) as client:
        yield client


def _req(server: TestServer, path: str, **kw: Any) -> HttpRequest:
    kw.setdefault("method", "GET")
    return HttpRequest(step="s", url=str(server.make_url(path)), **kw)


async def test_post_json_with_headers(server: TestServer, webhooks: WebhookClient) -> None:
    request = _req(
        server,
        "/echo?x=1",
        method="POST",
        headers={"Authorization": "Bearer sekrit"},
        json_body={"pin": "1234", "n": 2},
        secrets=("sekrit",),
    )
    result = await webhooks(request)
    assert result == WebhookResult(201, {"ok": True, "got": {"pin": "1234", "n": 2}})
    assert SEEN == [
        {"method": "POST", "auth": "Bearer sekrit", "body": {"pin": "1234", "n": 2}, "query": {"x": "1"}}
    ]


async def test_error_status_and_text_body(server: TestServer, webhooks: WebhookClient) -> None:
    assert await webhooks(_req(server, "/fail")) == WebhookResult(503, {"error": "nope"})
    assert await webhooks(_req(server, "/text")) == WebhookResult(200, "plain words")


async def test_an_unknown_charset_is_read_as_utf8(server: TestServer, webhooks: WebhookClient) -> None:
    assert await webhooks(_req(server, "/bad-charset")) == WebhookResult(200, "caf\ufffd")


async def test_timeout_and_oversized_response(server: TestServer, webhooks: WebhookClient) -> None:
    result = await webhooks(_req(server, "/slow", timeout_ms=200))
    assert result == WebhookFailed("timeout after 200 ms")
    result = await webhooks(_req(server, "/huge"))
    assert isinstance(result, WebhookFailed)
    assert "larger than" in result.reason


async def test_connection_error_does_not_leak_secrets(webhooks: WebhookClient) -> None:
    request = HttpRequest(
        step="s", method="GET", url="http://127.0.0.1:9/x?token=sekrit", secrets=("sekrit",)
    )
    result = await webhooks(request)
    assert isinstance(result, WebhookFailed)
    assert "sekrit" not in result.reason


async def test_a_plain_session_is_not_trusted_to_reach_loopback(server: TestServer) -> None:
    """perform_request with any other session uses the default policy (the call runtime's fallback)."""
    async with aiohttp.ClientSession() as session:
        result = await perform_request(session, _req(server, "/echo"))
    assert isinstance(result, WebhookFailed)
    assert "loopback" in result.reason
    assert SEEN == []


async def test_hosts_outside_the_allow_list_fail_without_a_request() -> None:
    async with WebhookClient(WebhookPolicy.parse("api.example.com, .trusted.test")) as handle:
        result = await handle(HttpRequest(step="s", method="GET", url="https://evil.example.net/steal"))
        assert isinstance(result, WebhookFailed)
        assert "evil.example.net is not in IVR_WEBHOOK_ALLOW" in result.reason
        # an allowed name goes on to DNS (.test names do not resolve: a lookup failure, not a refusal)
        ok_host = await handle(
            HttpRequest(step="s", method="GET", url="http://x.trusted.test:9/", timeout_ms=2000)
        )
        assert isinstance(ok_host, WebhookFailed)
        assert "IVR_WEBHOOK_ALLOW" not in ok_host.reason


def test_the_allow_list_parses_names_suffixes_and_networks() -> None:
    policy = WebhookPolicy.parse(" API.Example.com, .trusted.test,10.0.0.0/8, 192.168.1.20 ,fd00::/8,")
    assert policy.names == ("api.example.com", ".trusted.test")
    assert [str(n) for n in policy.networks] == ["10.0.0.0/8", "192.168.1.20/32", "fd00::/8"]
    assert policy.name_allowed("api.example.com.")
    assert policy.name_allowed("a.b.trusted.test")
    assert not policy.name_allowed("trusted.test.evil.com")
    assert not policy.name_allowed("xapi.example.com")
    for bad in ("10.0.0.0/33", "user@host", "*.example.com", "300.1.1.1/8"):
        with pytest.raises(ValueError, match="not a"):
            WebhookPolicy.parse(bad)
    assert not WebhookPolicy.parse(None).restricted
    assert not WebhookPolicy.parse(" , ").restricted


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("8.8.8.8", None),
        ("2606:4700::1111", None),
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "unspecified"),
        ("::", "unspecified"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.0.1", "private"),
        ("100.64.0.1", "private"),
        ("fd12::1", "private"),
        ("fec0::1", "private"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("192.0.2.1", "reserved"),
        ("2001:db8::1", "reserved"),
        ("::7f00:1", "reserved"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "link-local"),
        ("::ffff:8.8.8.8", None),
        ("2002:7f00:1::", "loopback"),
        ("64:ff9b::a9fe:a9fe", "link-local"),
        ("64:ff9b::808:808", None),
    ],
)
def test_address_kinds(address: str, kind: str | None) -> None:
    ip = parse_address(address)
    assert ip is not None
    assert address_kind(ip) == kind


def test_refusals_say_what_to_allow() -> None:
    default = WebhookPolicy()
    ip = parse_address("10.1.2.3")
    assert ip is not None
    why = default.refusal("crm.internal", ip)
    assert why == (
        "crm.internal resolves to 10.1.2.3, which is a private address (allow it with a 10.1.2.3/32 entry"
        " in IVR_WEBHOOK_ALLOW or IVR_WEBHOOK_ALLOW_PRIVATE=true)"
    )
    assert WebhookPolicy(allow_private=True).refusal("crm.internal", ip) is None
    loopback = parse_address("127.0.0.1")
    assert loopback is not None
    assert "loopback" in str(WebhookPolicy(allow_private=True).refusal("127.0.0.1", loopback))
    # a network entry allows by address, whatever the name; names of other hosts stay refused
    cidr = WebhookPolicy.parse("api.example.com,127.0.0.0/8")
    assert cidr.refusal("anything.test", loopback) is None
    public = parse_address("8.8.8.8")
    assert public is not None
    assert cidr.refusal("api.example.com", public) is None
    assert (
        cidr.refusal("other.example.com", public) == "other.example.com (8.8.8.8) is not in IVR_WEBHOOK_ALLOW"
    )
    assert cidr.refusal("8.8.8.8", public) == "8.8.8.8 is not in IVR_WEBHOOK_ALLOW"
    mapped = parse_address("::ffff:127.0.0.1")
    assert mapped is not None
    assert cidr.refusal("x.test", mapped) is None, "an IPv4 entry covers the same address IPv4-mapped"


def test_the_settings_check_the_allow_list_and_build_the_client() -> None:
    with pytest.raises(ConfigError, match=r"IVR_WEBHOOK_ALLOW\): '10.0.0.0/33' is not an address or network"):
        load_settings(environ={"IVR_WEBHOOK_ALLOW": "api.example.com,10.0.0.0/33"}, toml_path=None)
    settings = load_settings(
        environ={"IVR_WEBHOOK_ALLOW": "api.example.com,10.0.0.0/8", "IVR_WEBHOOK_ALLOW_PRIVATE": "true"},
        toml_path=None,
    )
    client = WebhookClient.from_settings(settings)
    assert client.policy == WebhookPolicy.parse("api.example.com,10.0.0.0/8", allow_private=True)
    assert WebhookClient.from_settings(load_settings(environ={}, toml_path=None)).policy == WebhookPolicy()
