"""How an ARI call gets its media channel: one strategy per transport behind ``AriCall._setup``.

Everything above this (the bridge, the media channel's StasisStart, the flow, the runtime, teardown) is
shared; what differs is the order Asterisk imposes to create and connect the media:

* **AudioSocket** (Asterisk dials us): register a new UUID with our AudioSocket server *before*
  ``externalMedia`` (``encapsulation=audiosocket transport=tcp data=UUID``), because Asterisk connects
  before its HTTP reply; then wait for the socket's UUID. We pace the audio.
* **WebSocket media** (we dial Asterisk, Asterisk 22.8+): ``externalMedia transport=websocket
  encapsulation=none connection_type=server external_host=""`` creates a channel that waits for us;
  its reply carries ``channelvars.MEDIA_WEBSOCKET_CONNECTION_ID``; connecting to
  ``/media/<that id>`` answers the channel (its StasisStart follows). Asterisk paces the audio.

Either way the call then waits for the media channel's StasisStart and bridges it with the caller. The
transport is chosen per deployment (``IVR_MEDIA``) or per call: a ``media=audiosocket|websocket``
Stasis argument, else the ``IVR_MEDIA`` channel variable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol

from ivr.ari.client import AriResources
from ivr.audiosocket.server import AudioSocketServer
from ivr.transport import MediaTransport
from ivr.websocket.client import MediaConnectError, WebSocketMediaClient
from ivr.websocket.session import WebSocketMediaSession

log = logging.getLogger(__name__)

TRANSPORTS: Final = ("audiosocket", "websocket")
MEDIA_ARG: Final = "media"
"""The Stasis argument that picks a call's transport (``Stasis(ivr,media=websocket)``)."""
MEDIA_VARIABLE: Final = "IVR_MEDIA"
"""The channel variable that does the same (``Set(IVR_MEDIA=websocket)`` before ``Stasis()``)."""
CONNECTION_VARIABLE: Final = "MEDIA_WEBSOCKET_CONNECTION_ID"


class SetupError(Exception):
    """A call could not be set up; ``step`` names where it failed."""

    def __init__(self, step: str, detail: str) -> None:
        super().__init__(f"setup step '{step}' failed: {detail}")
        self.step = step


Step = Callable[[str, Awaitable[Any]], Awaitable[Any]]
"""Runs one named setup step under the call's step timeout (``AriCall._step``): a timeout or an ARI
error becomes a :class:`SetupError` naming the step."""


@dataclass(frozen=True, slots=True)
class AttachRequest:
    """One call's media to create: what externalMedia needs, and how to tell the call it exists."""

    ari: AriResources
    app: str
    media_id: str
    """The media channel's id (we choose it, so its events find the call before the REST reply)."""
    format: str
    timeout: float
    created: Callable[[asyncio.Future[Any]], None]
    """Called with the ``externalMedia`` request as it is sent: the channel exists in Asterisk once it handled
    the request, whether or not the reply reaches us, so teardown waits for the request to settle, then
    deletes the channel (a DELETE sent first would find nothing and the channel would stay)."""

    def create(self, **params: Any) -> asyncio.Future[Any]:
        """Send ``externalMedia`` (id ``media_id``), tell the call, and return the request's future: a
        stopped call does not cancel it (teardown waits for it), only the wait for its reply."""
        creation = asyncio.ensure_future(
            self.ari.external_media(app=self.app, format=self.format, channel_id=self.media_id, **params)
        )
        self.created(creation)
        return asyncio.shield(creation)


class MediaAttach(Protocol):
    """One transport's way of giving a call its media."""

    @property
    def transport(self) -> str: ...

    async def attach(self, request: AttachRequest, step: Step) -> MediaTransport:
        """Create the media channel and return its connected session (StasisStart is the caller's)."""

    async def release(self, media: MediaTransport, reason: str) -> None:
        """End the session from our side (teardown, transfer); the media channel is deleted after."""


class AudioSocketAttach:
    """AudioSocket: Asterisk connects to our server (``advertise`` is the ``host:port`` it dials)."""

    transport: Final = "audiosocket"

    def __init__(self, server: AudioSocketServer, advertise: str) -> None:
        self.server = server
        self.advertise = advertise

    async def attach(self, request: AttachRequest, step: Step) -> MediaTransport:
        session_uuid = uuid.uuid4()
        expectation = self.server.expect(session_uuid, request.format)
        try:
            await step("externalMedia", request.create(external_host=self.advertise, data=str(session_uuid)))
            session: MediaTransport = await step("AudioSocket UUID", expectation.wait(request.timeout))
            return session
        finally:
            expectation.cancel()

    async def release(self, media: MediaTransport, reason: str) -> None:
        media.hangup(reason)  # FIN after the hangup message; the session itself ends at once


class WebSocketAttach:
    """WebSocket media, the app-connects shape: we connect to Asterisk's ``/media/<connection id>``."""

    transport: Final = "websocket"

    def __init__(self, client: WebSocketMediaClient) -> None:
        self.client = client

    async def attach(self, request: AttachRequest, step: Step) -> MediaTransport:
        channel = await step(
            "externalMedia",
            request.create(
                external_host="", encapsulation="none", transport="websocket", connection_type="server"
            ),
        )
        connection_id = channel.channelvars.get(CONNECTION_VARIABLE, "")
        if not connection_id:
            raise SetupError(
                "externalMedia",
                f"Asterisk's reply has no {CONNECTION_VARIABLE} (is chan_websocket loaded?)",
            )
        try:
            session: WebSocketMediaSession = await step(
                "WebSocket media", self.client.connect(connection_id, timeout=request.timeout)
            )
        except MediaConnectError as exc:
            raise SetupError("WebSocket media", str(exc)) from None
        return session

    async def release(self, media: MediaTransport, reason: str) -> None:
        """HANGUP, then wait (bounded) until the connection and its tasks are gone: nothing of the call
        outlives it."""
        if isinstance(media, WebSocketMediaSession):
            with contextlib.suppress(Exception):
                await media.aclose(reason)
        else:
            media.hangup(reason)


class MediaAttachments:
    """The transports this process offers ARI calls, and which one each call gets."""

    def __init__(
        self, default: str, audiosocket: AudioSocketAttach, websocket: WebSocketAttach | None = None
    ) -> None:
        if default not in TRANSPORTS:
            raise ValueError(f"media transport {default!r}: expected one of {', '.join(TRANSPORTS)}")
        if default == "websocket" and websocket is None:
            raise ValueError("websocket media is the default but no WebSocket media client was given")
        self.default = default
        self._by_name: dict[str, MediaAttach] = {"audiosocket": audiosocket}
        if websocket is not None:
            self._by_name["websocket"] = websocket

    @property
    def choosable(self) -> bool:
        """More than one transport: a call may ask for the other (so its ``IVR_MEDIA`` is worth reading)."""
        return len(self._by_name) > 1

    def choose(self, call_id: str, asked: str | None) -> MediaAttach:
        """The transport for a call that ``asked`` for one (None: the default). An unknown or unavailable
        name gets the default, with one line saying why (the call still works)."""
        name = (asked or "").strip().lower() or self.default
        found = self._by_name.get(name)
        if found is not None:
            return found
        why = (
            f"not a media transport (expected {' or '.join(TRANSPORTS)})"
            if name not in TRANSPORTS
            else "not available here (this Asterisk is too old for WebSocket media, see the startup log)"
        )
        log.warning("call %s: media %r %s; using %s", call_id, asked, why, self.default)
        return self._by_name[self.default]
