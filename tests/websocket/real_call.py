"""One call through a real Asterisk with WebSocket media, set up as the runtime will do it.

caller ``Local/dial16@audiosocket-test`` (its ``;2`` dials the test's :class:`Ear`) enters the test's
Stasis app; an externalMedia WebSocket channel is made (Asterisk as server: the test connects to
``/media/<id>``; or Asterisk as client: it dials a ``websocket_client.conf`` entry); both go into a
mixing bridge. Everything is torn down afterwards and Asterisk is left idle.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from ivr.websocket import WebSocketMediaClient, WebSocketMediaServer, WebSocketMediaSession
from tests.real_asterisk import AriProbe, EventLog, RealAsterisk

from .ear import Ear, start_ear


@dataclass
class RealCall:
    ari: AriProbe
    events: EventLog
    ear: Ear
    session: WebSocketMediaSession
    caller_id: str
    media_id: str
    bridge_id: str
    media: dict[str, Any]


def media_params(app: str, media_id: str, **extra: str) -> dict[str, str]:
    return {
        "app": app,
        "transport": "websocket",
        "encapsulation": "none",
        "format": "slin16",
        "channelId": media_id,
        **extra,
    }


@contextlib.asynccontextmanager
async def real_call(
    asterisk: RealAsterisk,
    app: str,
    *,
    server: WebSocketMediaServer | None = None,
    external_host: str = "",
    transport_data: str | None = None,
    caller: str = "Local/dial16@audiosocket-test",
    caller_variables: dict[str, str] | None = None,
) -> AsyncIterator[RealCall]:
    """``server`` given: Asterisk dials it (connection_type=client); otherwise the test connects.

    The default caller's far half dials the :class:`Ear`; another ``caller`` (``Local/dtmf@caller``)
    leaves the ear unconnected."""
    tag = uuid.uuid4().hex[:8]
    media_id, bridge_id = f"wsm-media-{tag}", f"wsm-bridge-{tag}"
    listener, ear = await start_ear()
    port = listener.sockets[0].getsockname()[1]
    async with (
        AriProbe.open(asterisk) as ari,
        ari.events(app) as events,
        WebSocketMediaClient(asterisk.http_url) as client,
    ):
        variables = {"AS_PORT": str(port), "ASUUID": str(uuid.uuid4()), **(caller_variables or {})}
        channel = await ari.originate(caller, app=app, formats="slin16", variables=variables)
        caller_id = channel["id"]
        try:
            await events.wait_for(lambda e: e["type"] == "StasisStart" and e["channel"]["id"] == caller_id)
            extra = {"transport_data": transport_data} if transport_data else {}
            if server is None:
                media = await ari.request(
                    "POST",
                    "/channels/externalMedia",
                    params=media_params(app, media_id, connection_type="server", **extra),
                )
                session = await client.connect(media["channelvars"]["MEDIA_WEBSOCKET_CONNECTION_ID"])
            else:
                expectation = server.expect(media_id)
                try:
                    params = media_params(
                        app, media_id, connection_type="client", external_host=external_host, **extra
                    )
                    media = await ari.request("POST", "/channels/externalMedia", params=params)
                    session = await expectation.wait(10)
                finally:
                    expectation.cancel()
            await events.wait_for(lambda e: e["type"] == "StasisStart" and e["channel"]["id"] == media_id)
            await ari.request("POST", "/bridges", params={"type": "mixing", "bridgeId": bridge_id})
            await ari.request(
                "POST", f"/bridges/{bridge_id}/addChannel", params={"channel": f"{caller_id},{media_id}"}
            )
            if "audiosocket-test" in caller:
                await ear.connected.wait()
            yield RealCall(ari, events, ear, session, caller_id, media_id, bridge_id, media)
        finally:
            await ari.hangup(media_id)
            await ari.hangup(caller_id)
            with contextlib.suppress(AssertionError):
                await ari.request("DELETE", f"/bridges/{bridge_id}")
            listener.close()
            await ari.wait_idle()
