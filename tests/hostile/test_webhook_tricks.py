"""Redirect, address and reply tricks against webhook steps, on local aiohttp servers.

Several loopback addresses play different hosts (Linux routes all of 127/8 to lo): the allowed API on
127.0.0.2, an internal service on 127.0.0.3 that must never be reached, a second allowed API on
127.0.0.4. A fake resolver maps test names onto them, so no test depends on the network's DNS.
Each trick checks the step fails with a clear reason and that the internal service saw no request.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from ivr.call.report import CallReport
from ivr.config import load_settings
from ivr.flow.actions import HttpRequest
from ivr.flow.events import WebhookFailed, WebhookResult
from ivr.flow.webhook import MAX_RESPONSE_BYTES, GuardedResolver, WebhookClient
from ivr.webhook_policy import WebhookPolicy
from ivr.workers.process import serve
from tests.audiosocket.peer import AsteriskPeer
from tests.services import free_tcp_port

API, INTERNAL, API2 = "127.0.0.2", "127.0.0.3", "127.0.0.4"


class FakeDns(AbstractResolver):
    """Answers from a table; a list of addresses is returned as is (order kept)."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        if host not in self.table:
            raise OSError(f"no such test host {host}")
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in self.table[host]
        ]

    async def close(self) -> None:
        pass


@dataclass
class Site:
    host: str
    port: int
    hits: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def url(self, path: str, host: str | None = None) -> str:
        return f"http://{host or self.host}:{self.port}{path}"


@dataclass
class Net:
    api: Site
    internal: Site
    api2: Site
    dns: FakeDns


async def _site(host: str, routes: Callable[[Site], list[web.RouteDef]]) -> tuple[Site, web.AppRunner]:
    site = Site(host, 0)

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        site.hits.append((request.path, dict(request.headers)))
        response: web.StreamResponse = await handler(request)
        return response

    app = web.Application(middlewares=[record])
    app.add_routes(routes(site))
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    tcp = web.TCPSite(runner, host, 0)
    await tcp.start()
    site.port = runner.addresses[0][1]
    return site, runner


@pytest.fixture
async def net() -> AsyncIterator[Net]:
    holder: dict[str, Site] = {}

    def api_routes(site: Site) -> list[web.RouteDef]:
        async def redirect(request: web.Request) -> web.Response:
            raise web.HTTPFound(request.query["to"])

        async def loop(request: web.Request) -> web.Response:
            raise web.HTTPFound("/loop")

        async def post_then_303(request: web.Request) -> web.Response:
            raise web.HTTPSeeOther("/json")

        async def json_ok(request: web.Request) -> web.Response:
            return web.json_response({"ok": True, "method": request.method})

        async def deep(request: web.Request) -> web.Response:
            levels = int(request.query["levels"])
            return web.Response(text="[" * levels + "]" * levels, content_type="application/json")

        async def claims_huge(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(headers={"Content-Length": str(200_000_000)})
            await response.prepare(request)
            await response.write(b"[" * 1000)
            return response

        async def endless(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse()
            response.enable_chunked_encoding()
            await response.prepare(request)
            try:
                for _ in range(10_000):  # 640 MB if nobody stopped reading
                    await response.write(b"1," * 32768)
            except (ConnectionError, RuntimeError):
                pass
            return response

        async def not_json(request: web.Request) -> web.Response:
            return web.Response(text="{'this': is not json", content_type="application/json")

        async def gzipped(request: web.Request) -> web.Response:
            body = gzip.compress(b"[" + b"0," * 5_000_000 + b"0]")
            return web.Response(
                body=body, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
            )

        async def silent(request: web.Request) -> web.Response:
            await asyncio.sleep(30)
            return web.json_response({})

        async def dribble(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request)
            for _ in range(300):
                await response.write(b" ")
                await asyncio.sleep(0.1)
            return response

        return [
            web.get("/redirect", redirect),
            web.post("/redirect", redirect),
            web.get("/loop", loop),
            web.post("/post-then-303", post_then_303),
            web.route("*", "/json", json_ok),
            web.get("/deep", deep),
            web.get("/claims-huge", claims_huge),
            web.get("/endless", endless),
            web.get("/not-json", not_json),
            web.get("/gzipped", gzipped),
            web.get("/silent", silent),
            web.get("/dribble", dribble),
        ]

    def internal_routes(site: Site) -> list[web.RouteDef]:
        async def metrics(request: web.Request) -> web.Response:
            return web.Response(text="ivr_active_calls 3\n")

        return [web.get("/{tail:.*}", metrics)]

    runners: list[web.AppRunner] = []
    for name, host, routes in (
        ("api", API, api_routes),
        ("internal", INTERNAL, internal_routes),
        ("api2", API2, api_routes),
    ):
        site, runner = await _site(host, routes)
        holder[name] = site
        runners.append(runner)
    dns = FakeDns(
        {
            "api.test": [API],
            "evil.test": ["93.184.216.34"],  # public: refused by the allow-list, never connected to
            "api2.test": [API2],
            "internal.test": [INTERNAL],
            "mixed.test": [INTERNAL, API],  # refused address first: it must be skipped, not tried
            "rebind.test": [INTERNAL],
            "v6.test": ["::1", "::ffff:127.0.0.3"],
        }
    )
    yield Net(holder["api"], holder["internal"], holder["api2"], dns)
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def allow_listed(net: Net) -> AsyncIterator[WebhookClient]:
    """IVR_WEBHOOK_ALLOW=api.test,api2.test,mixed.test,127.0.0.2/32,127.0.0.4/32 (the APIs live on loopback)."""
    policy = WebhookPolicy.parse(f"api.test,api2.test,mixed.test,{API}/32,{API2}/32")
    async with asyncio.timeout(30), WebhookClient(policy, resolver=net.dns) as client:
        yield client


@pytest.fixture
async def default_policy(net: Net) -> AsyncIterator[WebhookClient]:
    """No allow-list: any public address, nothing else."""
    async with asyncio.timeout(30), WebhookClient(resolver=net.dns) as client:
        yield client


def _get(url: str, **kw: Any) -> HttpRequest:
    return HttpRequest(step="lookup", method=kw.pop("method", "GET"), url=url, **kw)


async def _refused(client: WebhookClient, url: str, net: Net, *, expect: str, **kw: Any) -> str:
    result = await client(_get(url, **kw))
    assert isinstance(result, WebhookFailed), result
    assert expect in result.reason
    assert net.internal.hits == [], "the internal service must never see a request"
    return result.reason


# ------------------------------------------------------------------ redirects


async def test_a_plain_redirect_inside_the_allow_list_is_followed(
    net: Net, allow_listed: WebhookClient
) -> None:
    result = await allow_listed(
        _get(net.api.url(f"/redirect?to={net.api2.url('/json', 'api2.test')}", "api.test"))
    )
    assert result == WebhookResult(200, {"ok": True, "method": "GET"})
    assert [path for path, _ in net.api2.hits] == ["/json"]


@pytest.mark.parametrize(
    ("target", "expect"),
    [
        ("http://evil.test/steal", "evil.test (93.184.216.34) is not in IVR_WEBHOOK_ALLOW"),
        ("http://internal.test:{port}/metrics", "internal.test (127.0.0.3) is not in IVR_WEBHOOK_ALLOW"),
        ("http://127.0.0.3:{port}/metrics", "127.0.0.3 is not in IVR_WEBHOOK_ALLOW"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is not in IVR_WEBHOOK_ALLOW"),
        ("http://[::1]:{port}/metrics", "::1 is not in IVR_WEBHOOK_ALLOW"),
        ("http://[::ffff:127.0.0.3]:{port}/metrics", "is not in IVR_WEBHOOK_ALLOW"),
        ("http://2130706435:{port}/metrics", "2130706435 is not a valid IP address"),
        ("file:///etc/passwd", "file URL (only http and https)"),
    ],
)
async def test_redirects_to_disallowed_places_are_refused(
    net: Net, allow_listed: WebhookClient, target: str, expect: str
) -> None:
    to = target.format(port=net.internal.port)
    reason = await _refused(allow_listed, net.api.url(f"/redirect?to={to}", "api.test"), net, expect=expect)
    assert reason.startswith("refused: ")
    assert [path for path, _ in net.api.hits] == ["/redirect"]


async def test_a_redirect_loop_stops_after_five_hops(net: Net, allow_listed: WebhookClient) -> None:
    await _refused(allow_listed, net.api.url("/loop", "api.test"), net, expect="more than 5 redirects")
    assert len(net.api.hits) == 6


async def test_headers_do_not_follow_a_redirect_to_another_origin(
    net: Net, allow_listed: WebhookClient
) -> None:
    to = net.api2.url("/json", "api2.test")
    request = _get(net.api.url(f"/redirect?to={to}", "api.test"), headers={"Authorization": "Bearer sekrit"})
    assert isinstance(await allow_listed(request), WebhookResult)
    [(_, first)] = net.api.hits
    [(_, second)] = net.api2.hits
    assert first["Authorization"] == "Bearer sekrit"
    assert "Authorization" not in second


async def test_post_redirected_with_303_becomes_get(net: Net, allow_listed: WebhookClient) -> None:
    request = _get(net.api.url("/post-then-303", "api.test"), method="POST", json_body={"a": 1})
    assert await allow_listed(request) == WebhookResult(200, {"ok": True, "method": "GET"})


# ------------------------------------------------------------------ addresses


@pytest.mark.parametrize(
    ("host", "expect"),
    [
        ("127.0.0.3", "127.0.0.3 is a loopback address"),
        ("localhost", "localhost resolves to"),  # the machine's own resolver: /etc/hosts
        ("internal.test", "internal.test resolves to 127.0.0.3, which is a loopback address"),
        ("rebind.test", "rebind.test resolves to 127.0.0.3, which is a loopback address"),
        ("v6.test", "v6.test resolves to ::1, which is a loopback address"),
        ("[::ffff:127.0.0.3]", "is a loopback address"),
        ("[::ffff:7f00:3]", "is a loopback address"),
        ("[::1]", "::1 is a loopback address"),
        ("0.0.0.0", "0.0.0.0 is a unspecified address"),
        ("127.1", "127.1 is not a valid IP address"),
        ("2130706435", "2130706435 is not a valid IP address"),
        ("0x7f.0.0.3", "0x7f.0.0.3 resolves to"),
    ],
)
async def test_default_policy_refuses_loopback_however_it_is_spelled(
    net: Net, host: str, expect: str
) -> None:
    # "localhost" and "0x7f.0.0.3" go to the system resolver (inet_aton reads hex): refused all the same
    resolver = None if host in ("localhost", "0x7f.0.0.3") else net.dns
    async with asyncio.timeout(30), WebhookClient(resolver=resolver) as client:
        await _refused(client, f"http://{host}:{net.internal.port}/metrics", net, expect=expect)


async def test_the_metrics_page_cannot_end_up_in_a_call(net: Net, default_policy: WebhookClient) -> None:
    reason = await _refused(default_policy, net.internal.url("/metrics"), net, expect="loopback address")
    assert reason == (
        "refused: 127.0.0.3 is a loopback address (allow it with a 127.0.0.3/32 entry in IVR_WEBHOOK_ALLOW)"
    )


async def test_only_allowed_answers_of_a_name_are_connected_to(net: Net, allow_listed: WebhookClient) -> None:
    """mixed.test resolves to the internal address first: the connector never sees that address."""
    result = await allow_listed(_get(f"http://mixed.test:{net.api.port}/json"))
    assert result == WebhookResult(200, {"ok": True, "method": "GET"})
    assert net.internal.hits == []


async def test_the_resolver_drops_refused_answers_itself(net: Net) -> None:
    guard = GuardedResolver(WebhookPolicy(), net.dns)
    with pytest.raises(OSError, match="loopback"):
        await guard.resolve("mixed.test", 80)
    allowing = GuardedResolver(WebhookPolicy.parse(f"{API}/32"), net.dns)
    assert [a["host"] for a in await allowing.resolve("mixed.test", 80)] == [API]


async def test_private_ranges_open_with_the_switch_but_loopback_does_not(net: Net) -> None:
    policy = WebhookPolicy(allow_private=True)
    async with WebhookClient(policy, resolver=net.dns) as client:
        await _refused(client, net.internal.url("/metrics"), net, expect="loopback address")


async def test_an_explicit_network_entry_opens_loopback(net: Net) -> None:
    async with WebhookClient(WebhookPolicy.parse(f"{INTERNAL}/32"), resolver=net.dns) as client:
        result = await client(_get(net.internal.url("/metrics")))
    assert result == WebhookResult(200, "ivr_active_calls 3\n")


# ------------------------------------------------------------------ replies


@pytest.mark.parametrize("levels", [65, 1_000, 100_000])
async def test_deep_json_is_a_failure_not_a_crash(net: Net, allow_listed: WebhookClient, levels: int) -> None:
    result = await allow_listed(_get(net.api.url(f"/deep?levels={levels}", "api.test")))
    assert result == WebhookFailed("response JSON nested deeper than 64 levels")


async def test_json_of_64_levels_is_fine(net: Net, allow_listed: WebhookClient) -> None:
    result = await allow_listed(_get(net.api.url("/deep?levels=64", "api.test")))
    assert isinstance(result, WebhookResult)


@pytest.mark.parametrize(
    ("path", "expect"),
    [
        ("/claims-huge", f"response larger than {MAX_RESPONSE_BYTES} bytes"),
        ("/endless", f"response larger than {MAX_RESPONSE_BYTES} bytes"),
        ("/not-json", "response is not valid JSON"),
        ("/gzipped", "compressed response (gzip)"),
    ],
)
async def test_bad_replies_fail_the_step(
    net: Net, allow_listed: WebhookClient, path: str, expect: str
) -> None:
    result = await allow_listed(_get(net.api.url(path, "api.test")))
    assert isinstance(result, WebhookFailed)
    assert expect in result.reason


@pytest.mark.parametrize("path", ["/silent", "/dribble"])
async def test_slow_servers_hit_the_step_timeout(net: Net, allow_listed: WebhookClient, path: str) -> None:
    result = await allow_listed(_get(net.api.url(path, "api.test"), timeout_ms=500))
    assert result == WebhookFailed("timeout after 500 ms")


# ------------------------------------------------------------------ through `ivr run`

FLOW = """\
name: lookup
start: lookup
steps:
  lookup:
    webhook:
      method: GET
      url: "{url}"
    save: info
    next: found
    on_error: failed
  found:
    say: "Found {{{{ info }}}}."
    next: bye
  failed:
    say: Sorry, that did not work.
    next: bye
  bye:
    hangup:
"""


async def _one_call(tmp_path: Path, url: str, **env: str) -> CallReport:
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "lookup.yaml").write_text(FLOW.format(url=url))
    settings = load_settings(
        environ={
            "IVR_FLOWS": str(tmp_path / "flows"),
            "IVR_DEFAULT_FLOW": "lookup",
            "IVR_AUDIOSOCKET_LISTEN": "127.0.0.1:0",
            "IVR_STT": "sim-text",
            "IVR_TTS": "sim-text",
            "IVR_PROMPT_CACHE": "",
            "IVR_RECORDS_PATH": str(tmp_path / "calls.sqlite3"),
            "IVR_METRICS_LISTEN": env.pop("IVR_METRICS_LISTEN", ""),
            **env,
        },
        toml_path=None,
    )
    stop = asyncio.Event()
    ready: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    reports: list[CallReport] = []
    task = asyncio.create_task(
        serve(settings, no_ari=True, stop=stop, ready=ready.set_result, on_report=reports.append)
    )
    try:
        async with asyncio.timeout(30):
            info = await ready
            peer = await AsteriskPeer.connect(info["audiosocket"][1], uuid.uuid4())
            await peer.read_until_eof(timeout=25)  # the flow speaks, then hangs up
            await peer.close()
            while not reports:  # noqa: ASYNC110 - the record follows the hangup
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 30) == 0
    [report] = reports
    return report


def _webhook_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and "webhook" in r.getMessage()
    ]


async def test_ivr_run_will_not_read_its_own_metrics_page_into_a_call(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_tcp_port()
    report = await _one_call(
        tmp_path, f"http://127.0.0.1:{port}/metrics", IVR_METRICS_LISTEN=f"127.0.0.1:{port}"
    )
    assert "failed" in report.path
    assert "found" not in report.path
    assert "info" not in report.variables
    assert not any("ivr_" in text for _, text in report.transcript)
    [line] = _webhook_lines(caplog)
    assert "127.0.0.1 is a loopback address" in line


async def test_ivr_run_follows_no_redirect_out_of_the_allow_list(
    tmp_path: Path, net: Net, caplog: pytest.LogCaptureFixture
) -> None:
    url = net.api.url(f"/redirect?to={net.internal.url('/metrics')}")
    report = await _one_call(tmp_path, url, IVR_WEBHOOK_ALLOW=API)
    assert "failed" in report.path
    assert "found" not in report.path
    assert net.internal.hits == []
    [line] = _webhook_lines(caplog)
    assert "127.0.0.3 is not in IVR_WEBHOOK_ALLOW" in line


async def test_ivr_run_takes_on_error_for_a_deeply_nested_reply(
    tmp_path: Path, net: Net, caplog: pytest.LogCaptureFixture
) -> None:
    report = await _one_call(tmp_path, net.api.url("/deep?levels=100000"), IVR_WEBHOOK_ALLOW=API)
    assert "failed" in report.path, "the caller hears the error path, not silence"
    assert report.outcome == "hangup"
    [line] = _webhook_lines(caplog)
    assert "nested deeper than 64 levels" in line


async def test_name_lookups_run_off_the_event_loop(net: Net, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default resolver calls getaddrinfo in a worker thread: a slow DNS server cannot stall calls."""
    loop_thread = threading.get_ident()
    threads: list[int] = []
    real = socket.getaddrinfo

    def recording(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.get_ident())
        return real("127.0.0.3", *args[1:], **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", recording)
    async with asyncio.timeout(30), WebhookClient() as client:
        await _refused(client, f"http://slow-dns.test:{net.internal.port}/", net, expect="loopback address")
    assert threads, "the name was resolved"
    assert loop_thread not in threads
