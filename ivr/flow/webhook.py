"""Performs the engine's :class:`~ivr.flow.actions.HttpRequest` with aiohttp (used by the call runtime).

Kept out of the pure engine: this is the only flow module that does network I/O for webhooks. One
attempt, no retries (a webhook may not be idempotent: placing an order twice is worse than failing);
the flow's ``on_error`` is the recovery path. Errors never echo secret values.

Every hop is checked against :class:`~ivr.webhook_policy.WebhookPolicy`: redirects are followed
here, one at a time (at most :data:`MAX_REDIRECTS`), and DNS names are resolved by
:class:`GuardedResolver`, which drops refused addresses from the answer itself, so the address checked
is the address aiohttp connects to (a name that resolves to a public address once and to 127.0.0.1
the next time gains nothing). Resolution runs in aiohttp's resolver (a thread or aiodns), never on the
event loop. Whatever goes wrong (a refused address, too many redirects, a timeout, a reply too large,
too deep or not the JSON it claims to be) comes back as :class:`~ivr.flow.events.WebhookFailed`,
which the engine logs once and routes to the step's ``on_error``.
"""

from __future__ import annotations

import asyncio
import codecs
import socket
import weakref
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from multidict import CIMultiDict
from yarl import URL

from ivr.bounded_json import DEFAULT_MAX_DEPTH, JsonLimitError, loads_bounded
from ivr.flow.actions import HttpRequest
from ivr.flow.events import WebhookFailed, WebhookResult
from ivr.webhook_policy import WebhookPolicy, parse_address

if TYPE_CHECKING:
    from ivr.config import Settings

MAX_RESPONSE_BYTES = 1_000_000
MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class WebhookLimits:
    max_bytes: int = MAX_RESPONSE_BYTES
    """Reply body (after the headers); more is a failure, read no further."""
    max_redirects: int = MAX_REDIRECTS
    max_depth: int = DEFAULT_MAX_DEPTH
    """Nesting of a JSON reply."""


class AddressRefused(OSError):
    """Every address a name resolved to is refused by the policy (raised inside aiohttp's connector)."""


class GuardedResolver(AbstractResolver):
    """Resolves through ``inner`` (aiohttp's default resolver) and keeps only the allowed addresses."""

    def __init__(self, policy: WebhookPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self._inner = inner
        self._own_inner = inner is None

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if self._inner is None:
            self._inner = DefaultResolver()  # needs the running loop: made on first use
        answers = await self._inner.resolve(host, port, family)
        allowed: list[ResolveResult] = []
        refusals: list[str] = []
        for answer in answers:
            ip = parse_address(answer["host"])
            why = f"{host} resolved to {answer['host']!r}" if ip is None else self.policy.refusal(host, ip)
            if why is None:
                allowed.append(answer)
            else:
                refusals.append(why)
        if not allowed:
            raise AddressRefused(refusals[0] if refusals else f"{host} resolved to no address")
        return allowed

    async def close(self) -> None:
        inner, self._inner = self._inner, None
        if inner is not None and self._own_inner:
            await inner.close()


_GUARDED: weakref.WeakKeyDictionary[aiohttp.ClientSession, GuardedResolver] = weakref.WeakKeyDictionary()


def guarded_session(
    policy: WebhookPolicy, *, resolver: AbstractResolver | None = None
) -> aiohttp.ClientSession:
    """A session for webhooks only: policy-checked DNS, no cookies shared between calls, no proxies
    from the environment, no compressed replies (a small gzip body can inflate to gigabytes)."""
    guard = GuardedResolver(policy, resolver)
    connector = aiohttp.TCPConnector(resolver=guard, ttl_dns_cache=10)
    session = aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
        auto_decompress=False,
        timeout=aiohttp.ClientTimeout(total=None),  # each request has its own deadline
    )
    _GUARDED[session] = guard
    return session


async def close_guarded(session: aiohttp.ClientSession) -> None:
    """Close a :func:`guarded_session` and its resolver (aiohttp leaves a resolver it was given open)."""
    guard = _GUARDED.pop(session, None)
    await session.close()
    if guard is not None:
        await guard.close()


async def perform_request(
    session: aiohttp.ClientSession, request: HttpRequest, *, limits: WebhookLimits | None = None
) -> WebhookResult | WebhookFailed:
    """Send ``request``; the JSON response (or text, if not JSON) becomes ``WebhookResult.body``.

    ``session`` should come from :func:`guarded_session` (see :class:`WebhookClient`); any other
    session is not used: the request then goes through a one-off guarded session with the default
    policy (public addresses only).
    """
    limits = limits or WebhookLimits()
    guard = _GUARDED.get(session)
    if guard is None:
        own = guarded_session(WebhookPolicy())
        try:
            return await perform_request(own, request, limits=limits)
        finally:
            await close_guarded(own)
    try:
        async with asyncio.timeout(request.timeout_ms / 1000):
            return await _follow(session, guard.policy, request, limits)
    except TimeoutError:
        return WebhookFailed(f"timeout after {request.timeout_ms} ms")
    except Exception as exc:  # whatever a peer makes happen, the step's on_error handles it
        return WebhookFailed(request.redact(_describe(exc)))


async def _follow(
    session: aiohttp.ClientSession, policy: WebhookPolicy, request: HttpRequest, limits: WebhookLimits
) -> WebhookResult | WebhookFailed:
    url = URL(request.url)
    origin = url.origin() if url.absolute else None
    method = request.method
    body = request.json_body if method != "GET" else None
    for hop in range(limits.max_redirects + 1):
        why = _hop_refusal(policy, url)
        if why is not None:
            return WebhookFailed(request.redact(f"refused: {why}"))
        # The step's headers (tokens!) go to its own origin only, never to where a redirect points.
        headers: CIMultiDict[str] = CIMultiDict(request.headers if url.origin() == origin else {})
        headers["Accept-Encoding"] = "identity"
        async with session.request(
            method, url, headers=headers, json=body, allow_redirects=False
        ) as response:
            location = response.headers.get("Location")
            if response.status not in _REDIRECTS or not location:
                return await _result(response, limits)
            if hop == limits.max_redirects:
                return WebhookFailed(f"more than {limits.max_redirects} redirects")
            url = response.url.join(URL(location))
            if response.status == 303 or (response.status in (301, 302) and method not in ("GET", "HEAD")):
                method, body = "GET", None
    raise AssertionError("unreachable")  # pragma: no cover


def _hop_refusal(policy: WebhookPolicy, url: URL) -> str | None:
    if url.scheme not in ("http", "https") or not url.raw_host:
        return f"{url.scheme or 'relative'} URL (only http and https)"
    host = url.raw_host
    # aiohttp connects to anything that looks like an address without asking the resolver: check here.
    if ":" in host or host.replace(".", "").isdigit():
        ip = parse_address(host)
        return f"{host} is not a valid IP address" if ip is None else policy.refusal(host, ip)
    return policy.host_refusal(host)


async def _result(response: aiohttp.ClientResponse, limits: WebhookLimits) -> WebhookResult | WebhookFailed:
    if response.content_length is not None and response.content_length > limits.max_bytes:
        return WebhookFailed(f"response larger than {limits.max_bytes} bytes")
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        return WebhookFailed(f"compressed response ({encoding[:20]}) although identity was asked for")
    raw = bytearray()
    async for chunk in response.content.iter_chunked(65536):
        raw += chunk
        if len(raw) > limits.max_bytes:
            return WebhookFailed(f"response larger than {limits.max_bytes} bytes")
    ok = 200 <= response.status < 300
    body = _decode(bytes(raw), response.charset, response.content_type, limits.max_depth, strict=ok)
    return body if isinstance(body, WebhookFailed) else WebhookResult(response.status, body)


def _decode(raw: bytes, charset: str | None, content_type: str, max_depth: int, *, strict: bool) -> Any:
    """JSON, else text; with ``strict`` (a 2xx reply) bad or too deep JSON is a failure, else dropped."""
    if not raw:
        return None
    try:
        codecs.lookup(charset or "utf-8")
    except LookupError:
        charset = "utf-8"
    text = raw.decode(charset or "utf-8", errors="replace")
    declared = content_type == "application/json" or content_type.endswith("+json")
    try:
        return loads_bounded(text, max_depth=max_depth)
    except JsonLimitError as exc:
        return WebhookFailed(f"response {exc}") if strict else None
    except ValueError as exc:
        if not declared:
            return text
        return WebhookFailed(f"response is not valid JSON ({exc})") if strict else None


def _describe(exc: Exception) -> str:
    cause = exc.os_error if isinstance(exc, aiohttp.ClientConnectorError) else exc
    if isinstance(cause, AddressRefused):
        return f"refused: {cause}"
    text = str(exc).splitlines()[0] if str(exc) else ""
    text = text if len(text) <= 200 else text[:200] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class WebhookClient:
    """The webhook handler of ``ivr run``: one guarded session shared by every call.

    ::

        async with WebhookClient(WebhookPolicy.parse("api.example.com")) as webhooks:
            result = await webhooks(request)   # WebhookResult | WebhookFailed, never raises
    """

    def __init__(
        self,
        policy: WebhookPolicy | None = None,
        *,
        limits: WebhookLimits | None = None,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self.policy = policy or WebhookPolicy()
        self.limits = limits or WebhookLimits()
        self._resolver = resolver
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookClient:
        """``IVR_WEBHOOK_ALLOW`` and ``IVR_WEBHOOK_ALLOW_PRIVATE`` (already validated by the settings)."""
        policy = WebhookPolicy.parse(settings.webhook_allow, allow_private=settings.webhook_allow_private)
        return cls(policy)

    async def __aenter__(self) -> WebhookClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def __call__(self, request: HttpRequest) -> WebhookResult | WebhookFailed:
        if self._session is None:
            self._session = guarded_session(self.policy, resolver=self._resolver)
        return await perform_request(self._session, request, limits=self.limits)

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await close_guarded(session)
