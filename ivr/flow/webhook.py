"""Performs the engine's :class:`~ivr.flow.actions.HttpRequest` with aiohttp (used by the call runtime).

Kept out of the pure engine: this is the only flow module that does network I/O for webhooks. One
attempt, no retries (a webhook may not be idempotent: placing an order twice is worse than failing);
the flow's ``on_error`` is the recovery path. Errors never echo secret values.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from ivr.flow.actions import HttpRequest
from ivr.flow.events import WebhookFailed, WebhookResult

MAX_RESPONSE_BYTES = 1_000_000


async def perform_request(
    session: aiohttp.ClientSession, request: HttpRequest
) -> WebhookResult | WebhookFailed:
    """Send ``request``; the JSON response (or text, if not JSON) becomes ``WebhookResult.body``."""
    timeout = aiohttp.ClientTimeout(total=request.timeout_ms / 1000)
    kwargs: dict[str, Any] = {"headers": dict(request.headers), "timeout": timeout}
    if request.json_body is not None and request.method != "GET":
        kwargs["json"] = request.json_body
    try:
        async with session.request(request.method, request.url, **kwargs) as response:
            raw = bytearray()
            async for chunk in response.content.iter_chunked(65536):
                raw += chunk
                if len(raw) > MAX_RESPONSE_BYTES:
                    return WebhookFailed(f"response larger than {MAX_RESPONSE_BYTES} bytes")
            return WebhookResult(response.status, _decode(bytes(raw), response.charset or "utf-8"))
    except TimeoutError:
        return WebhookFailed(f"timeout after {request.timeout_ms} ms")
    except (aiohttp.ClientError, asyncio.IncompleteReadError, ValueError) as exc:
        return WebhookFailed(request.redact(f"{type(exc).__name__}: {exc}"))


def _decode(raw: bytes, charset: str) -> Any:
    if not raw:
        return None
    text = raw.decode(charset, errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text
