"""The app as the WebSocket client: connect to Asterisk's ``/media/<connection_id>``.

Asterisk is the server when the channel was made by externalMedia ``connection_type=server`` (the id is
in the reply's ``channelvars.MEDIA_WEBSOCKET_CONNECTION_ID``) or by ``Dial(WebSocket/INCOMING/...)``
(the id is that channel's variable of the same name). Asterisk answers the channel when the socket
opens; it asks for no credentials on ``/media`` (the connection id, a random UUID, is the only key), so
its HTTP port belongs on a private network.
"""

from __future__ import annotations

import asyncio
import logging
import re

import aiohttp

from ivr.websocket.protocol import SUBPROTOCOL
from ivr.websocket.session import SessionConfig, WebSocketMediaSession, read_media_start

log = logging.getLogger(__name__)

_CONNECTION_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


class MediaConnectError(ConnectionError):
    """Asterisk refused the media connection, or it never said MEDIA_START."""


class WebSocketMediaClient:
    """Opens media connections to one Asterisk and owns them (``close()`` hangs up what is left)."""

    def __init__(
        self,
        http_url: str,
        config: SessionConfig | None = None,
        *,
        heartbeat: float | None = 10.0,
        http: aiohttp.ClientSession | None = None,
    ) -> None:
        """``http_url``: Asterisk's HTTP server, e.g. ``http://127.0.0.1:8088`` (its ``prefix`` included)."""
        base = http_url.rstrip("/")
        if base.endswith("/ari"):
            base = base[: -len("/ari")]
        self.media_url = base.replace("https://", "wss://", 1).replace("http://", "ws://", 1) + "/media/"
        self.config = config or SessionConfig()
        self.heartbeat = heartbeat
        self._http = http
        self._own_http = http is None
        self.sessions: set[WebSocketMediaSession] = set()

    async def connect(self, connection_id: str, *, timeout: float = 5.0) -> WebSocketMediaSession:
        """Connect, wait for MEDIA_START, and return the session (already reading)."""
        if not _CONNECTION_ID.fullmatch(connection_id):
            raise ValueError(f"not a chan_websocket connection id: {connection_id!r:.60}")
        if self._http is None:
            # Every call's media is a connection held for the whole call: no pool limit (aiohttp's
            # default of 100 would make the 101st call wait for a slot until its setup timed out).
            self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        url = self.media_url + connection_id
        try:
            async with asyncio.timeout(timeout):
                ws = await self._http.ws_connect(
                    url,
                    protocols=(SUBPROTOCOL,),
                    heartbeat=self.heartbeat,
                    autoclose=True,
                    autoping=True,
                    max_msg_size=1 << 20,
                )
        except aiohttp.WSServerHandshakeError as exc:
            why = {404: "no WebSocket channel waits for it (hung up?)", 409: "it is already connected"}
            raise MediaConnectError(
                f"Asterisk refused media connection {connection_id}: {exc.status} "
                f"{why.get(exc.status, exc.message)}"
            ) from None
        except aiohttp.ServerDisconnectedError:
            # What Asterisk does with a connection over http.conf's sessionlimit (100 by default), where
            # every WebSocket media call holds one session for the whole call and every REST connection another
            raise MediaConnectError(
                f"Asterisk closed media connection {connection_id} unanswered: is its HTTP server full "
                "(http.conf sessionlimit: one session per WebSocket media call, one per REST connection)?"
            ) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise MediaConnectError(f"media connection {connection_id} to {url} failed: {exc!r}") from None
        try:
            start = await read_media_start(ws, timeout)
            session = WebSocketMediaSession(
                ws, start, shape="client", peer=url.split("/media/")[0], config=self.config
            )
        except (TimeoutError, ValueError) as exc:
            await ws.close(code=1002)
            raise MediaConnectError(f"media connection {connection_id}: {exc}") from None
        self.sessions.add(session)
        reader = session.start_reading()
        reader.add_done_callback(lambda _task: self.sessions.discard(session))
        log.info(
            "media %s: connected to Asterisk (%s, %d-byte frames)",
            session.channel_id,
            start.format,
            session.frame_size,
        )
        return session

    async def close(self) -> None:
        """Hang up every session still open, then close the HTTP client if this object made it."""
        await asyncio.gather(
            *(s.aclose("client closing") for s in list(self.sessions)), return_exceptions=True
        )
        if self._own_http and self._http is not None:
            await self._http.close()
            self._http = None

    async def __aenter__(self) -> WebSocketMediaClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
