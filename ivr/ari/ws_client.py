"""ARI REST over an open ARI WebSocket: the same resource methods as :class:`~ivr.ari.client.AriClient`.

Each request goes out as one ``RESTRequest`` text frame with a fresh ``request_id``; whoever reads the
socket hands every ``RESTResponse`` to :meth:`WsAriClient.feed`, which wakes the request it answers.
Errors are those of the HTTP client: an error status becomes the exception of its status
(:class:`~ivr.ari.errors.NotFound`, ...) with Asterisk's message; no reply within ``timeout`` is
:class:`~ivr.ari.errors.AriTimeout`; a closed socket (pending requests included) is
:class:`~ivr.ari.errors.AriConnectionError`, a reply that is not JSON :class:`~ivr.ari.errors.BadReply`;
a request that would not fit in one Asterisk frame is
refused before sending (:class:`~ivr.ari.errors.RequestTooLarge`). A reply that comes after its request
gave up is dropped with a debug line.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp

from ivr.ari.client import AriResources, Params, _clean, _short
from ivr.ari.errors import AriConnectionError, AriTimeout, BadReply, RequestTooLarge, error_for_status
from ivr.ari.rest_messages import MAX_REQUEST_BYTES, MessageError, RestRequest, RestResponse, request_uri

log = logging.getLogger("ivr.ari.ws")

SendText = Callable[[str], Awaitable[None]]


class WsAriClient(AriResources):
    """REST over a WebSocket someone else reads. ``send`` writes one text frame (e.g. ``ws.send_str``)."""

    def __init__(
        self,
        send: SendText,
        *,
        timeout: float = 10.0,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        name: str = "ws",
    ) -> None:
        if timeout <= 0 or max_request_bytes <= 0:
            raise ValueError("timeout and max_request_bytes must be > 0")
        self.name = name
        self.timeout = timeout
        self.max_request_bytes = max_request_bytes
        self._send = send
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[RestResponse]] = {}
        self._closed_reason: str | None = None

    def __repr__(self) -> str:
        return f"WsAriClient({self.name!r}, pending={len(self._pending)})"

    @property
    def closed(self) -> bool:
        return self._closed_reason is not None

    @property
    def pending(self) -> int:
        """Requests sent and not answered yet."""
        return len(self._pending)

    async def request(
        self,
        method: str,
        path: str,
        params: Params | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> Any:
        """Send one ARI request (``path`` relative to ``/ari``); return the decoded JSON or ``None``."""
        where = f"ARI {method} {path}"
        if self._closed_reason is not None:
            raise AriConnectionError(f"{where}: {self._closed_reason}")
        request_id = f"{self.name}-{next(self._ids)}"
        text = RestRequest(
            request_id=request_id,
            method=method.upper(),
            uri=request_uri(path),
            query=tuple(_clean(params or {}).items()),
            body=dict(body) if body is not None else None,
        ).encode()
        size = len(text.encode("utf-8"))
        if size > self.max_request_bytes:
            raise RequestTooLarge(
                f"{where}: a {size}-byte request is over the {self.max_request_bytes}-byte limit"
            )
        future: asyncio.Future[RestResponse] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        log.debug("%s (%s)", where, request_id)
        try:
            async with asyncio.timeout(self.timeout):
                await self._send(text)
                response = await future
        except TimeoutError:
            raise AriTimeout(f"{where}: no reply within {self.timeout:g} s") from None
        except AriConnectionError as exc:  # the socket closed while this request waited
            raise AriConnectionError(f"{where}: {exc}") from None
        except (ConnectionError, aiohttp.ClientError) as exc:
            raise AriConnectionError(f"{where}: cannot send: {type(exc).__name__}") from exc
        finally:
            self._pending.pop(request_id, None)
        return self._result(response, method, path)

    def feed(self, response: RestResponse) -> bool:
        """Deliver one reply from the socket; False when no request waits for it (late or foreign)."""
        future = self._pending.get(response.request_id)
        if future is None or future.done():
            level = logging.WARNING if response.status >= 400 and not response.request_id else logging.DEBUG
            log.log(
                level,
                "ARI over WebSocket %s: reply %d %s for no waiting request (id %r)",
                self.name,
                response.status,
                response.reason[:60],
                response.request_id[:40],
            )
            return False
        future.set_result(response)
        return True

    def close(self, reason: str = "the WebSocket is closed") -> None:
        """No more requests; the pending ones fail with :class:`AriConnectionError` saying ``reason``."""
        if self._closed_reason is not None:
            return
        self._closed_reason = reason
        for future in self._pending.values():
            if not future.done():
                future.set_exception(AriConnectionError(reason))
        self._pending.clear()

    @staticmethod
    def _result(response: RestResponse, method: str, path: str) -> Any:
        if response.status >= 400:
            message = ""
            try:
                data = response.data()
            except MessageError:
                data = None
            if isinstance(data, Mapping):
                message = str(data.get("message") or data.get("error") or "")
            raise error_for_status(
                response.status,
                _short(message or response.reason, 200) or f"HTTP {response.status}",
                method=method,
                path=path,
            )
        try:
            return response.data()
        except MessageError as exc:
            raise BadReply(f"ARI {method} {path}: {exc}") from None
