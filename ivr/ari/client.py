"""A thin asyncio ARI REST client on aiohttp with HTTP basic auth.

Only the calls an IVR needs, each one a method with typed arguments and results. The resource methods
live in :class:`AriResources` on top of one abstract ``request``, so REST over HTTP (:class:`AriClient`)
and REST over an ARI WebSocket (:class:`ivr.ari.ws_client.WsAriClient`) share them. HTTP errors become the
exceptions of :mod:`ivr.ari.errors` carrying Asterisk's message; network failures become
:class:`~ivr.ari.errors.AriConnectionError`. The password lives only in the ``Authorization`` header:
it is never part of a URL or a log line.
"""

from __future__ import annotations

import base64
import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import aiohttp
from yarl import URL

from ivr.ari.errors import AriConnectionError, BadReply, error_for_status
from ivr.ari.models import AsteriskInfo, Bridge, Channel
from ivr.bounded_json import JsonLimitError, loads_bounded

log = logging.getLogger("ivr.ari")

MAX_REPLY_BYTES = 4 * 1024 * 1024
"""A REST reply; ``GET /channels`` with a few thousand channels stays well below it."""
MAX_EVENT_BYTES = 1024 * 1024
"""One events WebSocket message; real ARI events are a few kilobytes."""

Params = Mapping[str, str | int | bool | None]


def ari_base_url(base_url: str) -> URL:
    """Normalise ``http://host:8088`` (or ``.../ari``) to the ``.../ari`` root; reject credentials in it."""
    url = URL(base_url)
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"ARI URL must be http(s)://HOST[:PORT], got {url.with_user(None)!s}")
    if url.user or url.password:
        raise ValueError("put the ARI user and password in their own settings, not in the URL")
    path = url.path.rstrip("/")
    if not path.endswith("/ari"):
        path = f"{path}/ari"
    return url.with_path(path).with_query(None).with_fragment(None)


def _seg(value: str) -> str:
    return quote(value, safe="")


def _short(text: str, limit: int = 160) -> str:
    """Peer text fit for one log line: first line, printable characters only, capped."""
    first = text.strip().splitlines()[0].rstrip(":") if text.strip() else ""
    clean = "".join(c if c.isprintable() else "?" for c in first)
    return clean if len(clean) <= limit else clean[:limit] + "..."


def _clean(params: Params) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in params.items():
        if value is None:
            continue
        out[key] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return out


KEEPALIVE_SECONDS = 10.0
"""How long an idle connection is kept for the next request: below Asterisk's own 15 s
(``session_keep_alive``), so a request never goes out on a connection Asterisk is closing."""


def rest_connector(connections: int) -> aiohttp.TCPConnector:
    """The connection pool of one process's REST client. Asterisk's HTTP server serves at most
    ``sessionlimit`` connections (http.conf, 100 by default) and closes every one over it at once:
    aiohttp's default pool (100, kept 15 s) let one worker's burst of set-ups or hang-ups take them all,
    and every request of the other workers, the events socket's reconnect and any other ARI client failed
    until they were let go (measured on Asterisk 22.10.1: 400 of 400 requests of a second client)."""
    return aiohttp.TCPConnector(limit=connections, keepalive_timeout=KEEPALIVE_SECONDS)


def _listing(data: Any, where: str) -> list[Any]:
    if data is None:
        return []
    if not isinstance(data, list):
        raise BadReply(f"ARI {where}: expected a list")
    return data


class _HttpTransport:
    """ARI requests over HTTP with basic auth (the transport half of :class:`AriClient`)."""

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        *,
        timeout: float = 10.0,
        session: aiohttp.ClientSession | None = None,
        max_reply_bytes: int = MAX_REPLY_BYTES,
        connections: int = 8,
    ) -> None:
        self.root = ari_base_url(base_url)
        self.connections = connections
        """Most connections open to Asterisk at once; more requests wait for one (see :func:`rest_connector`)."""
        self.username = username
        self.max_reply_bytes = max_reply_bytes
        token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        # identity: Asterisk never compresses, and a small compressed reply could inflate to gigabytes
        self._headers = {"Authorization": f"Basic {token}", "Accept-Encoding": "identity"}
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session = session
        self._own_session = session is None

    def __repr__(self) -> str:
        return f"AriClient({str(self.root)!r}, user={self.username!r})"

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            if not self._own_session:
                raise AriConnectionError("the shared aiohttp session is closed")
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, auto_decompress=False, connector=rest_connector(self.connections)
            )
        return self._session

    async def close(self) -> None:
        if self._own_session and self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------ transport

    async def request(
        self,
        method: str,
        path: str,
        params: Params | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> Any:
        """Send one ARI request (``path`` relative to ``/ari``); return the decoded JSON or ``None``.

        The reply is read up to ``max_reply_bytes`` and must be UTF-8 JSON of bounded depth; anything
        else raises :class:`~ivr.ari.errors.BadReply` with one short line (never the junk itself).
        """
        url = self.root.with_path(self.root.path + path, encoded=True)
        query = _clean(params or {})
        session = self._get_session()
        where = f"ARI {method} {path}"
        log.debug("ARI %s %s", method, path)
        try:
            async with session.request(
                method, url, params=query, json=body, headers=self._headers, timeout=self._timeout
            ) as resp:
                raw = await self._read(resp, where)
                status = resp.status
                content_type = resp.content_type
        except aiohttp.ClientResponseError as exc:  # the reply's status line or headers are not HTTP
            raise BadReply(f"{where}: the reply is not HTTP ({_short(exc.message)})") from exc
        except aiohttp.ClientPayloadError as exc:
            raise BadReply(f"{where}: the reply body is malformed ({_short(str(exc))})") from exc
        except aiohttp.ServerDisconnectedError as exc:  # also what Asterisk does over its sessionlimit
            raise AriConnectionError(
                f"{where}: Asterisk closed the connection unanswered (restarting, or its HTTP server full: "
                "http.conf sessionlimit counts every REST connection and WebSocket of every client)"
            ) from exc
        except aiohttp.ClientError as exc:
            raise AriConnectionError(f"{where}: {type(exc).__name__}: {_short(str(exc))}") from exc
        except TimeoutError as exc:
            raise AriConnectionError(f"{where}: timed out") from exc
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            if status >= 400:
                raise error_for_status(status, f"HTTP {status}", method=method, path=path) from None
            raise BadReply(f"{where}: the reply is not UTF-8 text (is this Asterisk?)") from None
        data: Any = None
        problem = ""
        if text.strip():
            try:
                data = loads_bounded(text)
            except JsonLimitError as exc:
                problem = f"the reply is {exc}"
            except ValueError:
                problem = f"the reply is not JSON ({content_type or 'no content type'}; is this Asterisk?)"
        if status >= 400:
            message = ""
            if isinstance(data, Mapping):
                message = str(data.get("message") or data.get("error") or "")
            raise error_for_status(
                status, _short(message or text, 200) or f"HTTP {status}", method=method, path=path
            )
        if problem:
            raise BadReply(f"{where}: {problem}")
        return data

    async def _read(self, resp: aiohttp.ClientResponse, where: str) -> bytes:
        limit = self.max_reply_bytes
        if resp.content_length is not None and resp.content_length > limit:
            raise BadReply(f"{where}: a reply of {resp.content_length} bytes is over the {limit}-byte limit")
        raw = bytearray()
        async for chunk in resp.content.iter_chunked(65536):
            raw += chunk
            if len(raw) > limit:
                raise BadReply(f"{where}: the reply is over the {limit}-byte limit")
        return bytes(raw)


class AriResources(ABC):
    """The ARI resource methods, on top of one ``request``: every transport implements only that."""

    @abstractmethod
    async def request(
        self,
        method: str,
        path: str,
        params: Params | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> Any:
        """Send one ARI request (``path`` relative to ``/ari``); return the decoded JSON or ``None``."""

    async def _channel(
        self, method: str, path: str, params: Params | None = None, body: Mapping[str, Any] | None = None
    ) -> Channel:
        data = await self.request(method, path, params, body)
        if not isinstance(data, Mapping):
            raise BadReply(f"ARI {method} {path}: expected a Channel object")
        return Channel.from_json(data)

    async def _bridge(self, method: str, path: str, params: Params | None = None) -> Bridge:
        data = await self.request(method, path, params)
        if not isinstance(data, Mapping):
            raise BadReply(f"ARI {method} {path}: expected a Bridge object")
        return Bridge.from_json(data)

    # ------------------------------------------------------------------ asterisk

    async def asterisk_info(self) -> AsteriskInfo:
        data = await self.request("GET", "/asterisk/info")
        info = AsteriskInfo.from_json(data) if isinstance(data, Mapping) else None
        if info is None or not info.version:
            raise BadReply("ARI GET /asterisk/info: no Asterisk version in the reply (is this Asterisk?)")
        return info

    # ------------------------------------------------------------------ channels

    async def list_channels(self) -> list[Channel]:
        data = await self.request("GET", "/channels")
        return [Channel.from_json(c) for c in _listing(data, "GET /channels") if isinstance(c, Mapping)]

    async def get_channel(self, channel_id: str) -> Channel:
        return await self._channel("GET", f"/channels/{_seg(channel_id)}")

    async def answer(self, channel_id: str) -> None:
        await self.request("POST", f"/channels/{_seg(channel_id)}/answer")

    async def hangup(self, channel_id: str, reason: str | None = None) -> None:
        """Hang up (``DELETE /channels/{id}``); ``reason`` e.g. normal, busy, congestion, no_answer."""
        await self.request("DELETE", f"/channels/{_seg(channel_id)}", {"reason": reason})

    async def ring(self, channel_id: str) -> None:
        """Indicate ringing to the channel (the caller hears ringback)."""
        await self.request("POST", f"/channels/{_seg(channel_id)}/ring")

    async def ring_stop(self, channel_id: str) -> None:
        await self.request("DELETE", f"/channels/{_seg(channel_id)}/ring")

    async def originate(
        self,
        endpoint: str,
        *,
        app: str | None = None,
        app_args: Sequence[str] | str | None = None,
        caller_id: str | None = None,
        timeout: int | None = None,
        channel_id: str | None = None,
        variables: Mapping[str, str] | None = None,
        context: str | None = None,
        extension: str | None = None,
        priority: int | None = None,
        other_channel_id: str | None = None,
        originator: str | None = None,
        formats: str | None = None,
    ) -> Channel:
        """``POST /channels``: returns the new channel (state ``Down``); StasisStart follows on answer.

        ``app_args`` is joined with commas (Asterisk splits it back into ``StasisStart.args``), so an
        argument must not contain a comma.
        """
        if app_args is not None and not isinstance(app_args, str):
            if any("," in a for a in app_args):
                raise ValueError("originate app_args must not contain commas")
            app_args = ",".join(app_args)
        params: dict[str, str | int | bool | None] = {
            "endpoint": endpoint,
            "app": app,
            "appArgs": app_args,
            "callerId": caller_id,
            "timeout": timeout,
            "channelId": channel_id,
            "context": context,
            "extension": extension,
            "priority": priority,
            "otherChannelId": other_channel_id,
            "originator": originator,
            "formats": formats,
        }
        body = {"variables": dict(variables)} if variables else None
        return await self._channel("POST", "/channels", params, body)

    async def external_media(
        self,
        *,
        app: str,
        external_host: str,
        format: str,
        data: str | None = None,
        encapsulation: str = "audiosocket",
        transport: str = "tcp",
        channel_id: str | None = None,
        variables: Mapping[str, str] | None = None,
        connection_type: str | None = None,
        direction: str | None = None,
    ) -> Channel:
        """``POST /channels/externalMedia``. For AudioSocket ``data`` is the session UUID (required).

        Asterisk has already connected to ``external_host`` and sent the UUID when this returns; the
        channel's own StasisStart (``args == [data]``) may arrive before or after the reply.
        """
        params: dict[str, str | int | bool | None] = {
            "app": app,
            "external_host": external_host,
            "encapsulation": encapsulation,
            "transport": transport,
            "format": format,
            "data": data,
            "channelId": channel_id,
            "connection_type": connection_type,
            "direction": direction,
        }
        body = {"variables": dict(variables)} if variables else None
        return await self._channel("POST", "/channels/externalMedia", params, body)

    async def continue_in_dialplan(
        self,
        channel_id: str,
        *,
        context: str | None = None,
        extension: str | None = None,
        priority: int | None = None,
        label: str | None = None,
    ) -> None:
        """Leave the application and continue in the dialplan (StasisEnd follows)."""
        await self.request(
            "POST",
            f"/channels/{_seg(channel_id)}/continue",
            {"context": context, "extension": extension, "priority": priority, "label": label},
        )

    async def redirect(self, channel_id: str, endpoint: str) -> None:
        """Redirect the channel to another endpoint of the same technology (e.g. SIP 302)."""
        await self.request("POST", f"/channels/{_seg(channel_id)}/redirect", {"endpoint": endpoint})

    async def send_dtmf(
        self,
        channel_id: str,
        dtmf: str,
        *,
        before: int | None = None,
        between: int | None = None,
        duration: int | None = None,
        after: int | None = None,
    ) -> None:
        """Play DTMF towards the channel's phone (not to the application's media socket)."""
        await self.request(
            "POST",
            f"/channels/{_seg(channel_id)}/dtmf",
            {"dtmf": dtmf, "before": before, "between": between, "duration": duration, "after": after},
        )

    async def get_variable(self, channel_id: str, variable: str) -> str:
        """Read a channel variable or function, e.g. ``CHANNEL(audionativeformat)`` -> ``"(slin16)"``."""
        data = await self.request("GET", f"/channels/{_seg(channel_id)}/variable", {"variable": variable})
        if not isinstance(data, Mapping):
            raise BadReply("ARI GET variable: expected a Variable object")
        return str(data.get("value", ""))

    async def set_variable(self, channel_id: str, variable: str, value: str) -> None:
        await self.request(
            "POST", f"/channels/{_seg(channel_id)}/variable", {"variable": variable, "value": value}
        )

    # ------------------------------------------------------------------ bridges

    async def create_bridge(
        self, *, type: str = "mixing", bridge_id: str | None = None, name: str | None = None
    ) -> Bridge:
        return await self._bridge("POST", "/bridges", {"type": type, "bridgeId": bridge_id, "name": name})

    async def get_bridge(self, bridge_id: str) -> Bridge:
        return await self._bridge("GET", f"/bridges/{_seg(bridge_id)}")

    async def list_bridges(self) -> list[Bridge]:
        data = await self.request("GET", "/bridges")
        return [Bridge.from_json(b) for b in _listing(data, "GET /bridges") if isinstance(b, Mapping)]

    async def add_channel(
        self,
        bridge_id: str,
        channel: str | Sequence[str],
        *,
        role: str | None = None,
        absorb_dtmf: bool | None = None,
        mute: bool | None = None,
    ) -> None:
        """Add channel(s) to a bridge. 422 :class:`UnprocessableEntity` before the channel's StasisStart."""
        channels = channel if isinstance(channel, str) else ",".join(channel)
        await self.request(
            "POST",
            f"/bridges/{_seg(bridge_id)}/addChannel",
            {"channel": channels, "role": role, "absorbDTMF": absorb_dtmf, "mute": mute},
        )

    async def remove_channel(self, bridge_id: str, channel: str | Sequence[str]) -> None:
        channels = channel if isinstance(channel, str) else ",".join(channel)
        await self.request("POST", f"/bridges/{_seg(bridge_id)}/removeChannel", {"channel": channels})

    async def destroy_bridge(self, bridge_id: str) -> None:
        await self.request("DELETE", f"/bridges/{_seg(bridge_id)}")


class AriClient(_HttpTransport, AriResources):
    """REST half of ARI. Use as ``async with AriClient(url, user, password) as ari: ...``.

    ``base_url`` is the HTTP root of Asterisk without ``/ari`` (e.g. ``http://127.0.0.1:8088``).
    Pass ``session`` to share an aiohttp session (then it is not closed by :meth:`close`).
    """

    # ------------------------------------------------------------------ events

    async def connect_events(
        self, app: str, *, subscribe_all: bool = False, heartbeat: float | None = None, timeout: float = 10.0
    ) -> aiohttp.ClientWebSocketResponse:
        """Open ``ws(s)://HOST/ari/events?app=APP`` with this client's credentials (see :mod:`events`)."""
        scheme = "wss" if self.root.scheme == "https" else "ws"
        url = self.root.with_scheme(scheme).with_path(self.root.path + "/events")
        params = {"app": app, "subscribeAll": "true" if subscribe_all else "false"}
        return await self._get_session().ws_connect(
            url,
            params=params,
            headers=self._headers,
            heartbeat=heartbeat,
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=timeout),
            autoclose=True,
            autoping=True,
            max_msg_size=MAX_EVENT_BYTES,
        )
