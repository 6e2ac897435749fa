"""externalMedia of the simulated ARI: the media channel, over AudioSocket or chan_websocket.

``POST /channels/externalMedia`` with ``encapsulation=audiosocket transport=tcp`` dials the app's
AudioSocket server through the :data:`~ivr.sim.media_leg.MediaConnector` before it replies; the channel
enters Stasis with ``args == [UUID]`` a moment later. With ``transport=websocket connection_type=server``
it makes a ``Down`` channel that waits for the app on ``/media/<connection id>`` (:mod:`ivr.sim.ws_media`).
Either way the end of the media socket hangs the channel up.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping

from aiohttp import web

from ivr.audiosocket.clock import FrameClock, LoopClock
from ivr.sim.ari_core import AriRequestError, SimCore
from ivr.sim.ari_state import SimChannel
from ivr.sim.chan_websocket import ChanWebsocketModel
from ivr.sim.media_leg import MediaLeg
from ivr.sim.ws_media import control_form, media_response
from ivr.transport import SLIN_FORMAT_RATES
from ivr.websocket.protocol import ControlForm

log = logging.getLogger("ivr.sim.ari")


class ExternalMediaRoutes(SimCore):
    """``POST /channels/externalMedia``, the ``/media/{id}`` WebSocket, and the watch on each media socket."""

    async def _h_external_media(self, request: web.Request) -> web.Response:
        q = request.query
        variables = await self._body_variables(request)
        app = q.get("app", "")
        if not app:
            raise AriRequestError(400, "app is required")
        fmt = q.get("format", "")
        if not fmt:
            raise AriRequestError(400, "format is required")
        if q.get("transport", "").lower() == "websocket":
            return self._external_websocket(q, app, fmt, variables)
        external_host = q.get("external_host", "")
        if not external_host:
            raise AriRequestError(400, "external_host is required")
        encapsulation = q.get("encapsulation", "rtp").lower()
        transport = q.get("transport", "udp").lower()
        if (encapsulation, transport) != ("audiosocket", "tcp"):
            # rtp/udp is real Asterisk's default; the simulator only speaks AudioSocket.
            raise AriRequestError(501, "The encapsulation and/or transport is not supported")
        data = q.get("data", "")
        if not data:
            raise AriRequestError(400, "data can not be empty")
        channel_id = q.get("channelId") or self._new_id()
        if channel_id in self.channels or channel_id in self.destroyed:
            raise AriRequestError(409, "Channel with given unique ID already exists")
        try:
            session = uuid.UUID(data)
        except ValueError as exc:
            # chan_audiosocket fails to parse it; ARI reports the failed dial as an allocation failure.
            raise AriRequestError(500, "Allocation failed") from exc
        host, _, port_text = external_host.rpartition(":")
        if not host or not port_text.isdigit():
            raise AriRequestError(500, "Allocation failed")
        try:
            leg = await self.media_connector(host.strip("[]"), int(port_text), session, fmt, channel_id)
        except (OSError, TimeoutError) as exc:
            log.info("sim externalMedia: cannot connect to %s: %s", external_host, exc)
            raise AriRequestError(500, "Allocation failed") from exc
        chan = SimChannel(
            id=channel_id,
            name=f"AudioSocket/{external_host}-{data}",
            state="Down",
            kind="media",
            app_name="AppDial2",
            app_data="(Outgoing Line)",
            native_format=fmt,
            variables=dict(variables),
            app=app,
            args=[data],
            media_uuid=data,
            media_host=external_host,
            media_format=fmt,
            media_leg=leg,
        )
        self.channels[channel_id] = chan
        self._leg_watchers[channel_id] = self._spawn(self._watch_leg(chan, leg), f"leg-{channel_id}")
        snapshot = chan.to_json()
        self._spawn(self._media_enters_stasis(chan, f"{external_host}/{data}"), f"media-{channel_id}")
        self._notify()
        return web.json_response(snapshot)

    def _external_websocket(
        self, q: Mapping[str, str], app: str, fmt: str, variables: dict[str, str]
    ) -> web.Response:
        """chan_websocket as the server: a Down channel that waits for the app on /media/<id>."""
        if q.get("encapsulation", "none").lower() != "none":
            raise AriRequestError(400, "encapsulation must be 'none' for the websocket transport")
        if q.get("connection_type", "client").lower() != "server":
            raise AriRequestError(
                501, "the simulator serves WebSocket media with connection_type=server only"
            )
        rate = SLIN_FORMAT_RATES.get(fmt)
        if rate is None:
            raise AriRequestError(501, f"the simulator's WebSocket media is linear PCM only, not {fmt}")
        channel_id = q.get("channelId") or self._new_id()
        if channel_id in self.channels or channel_id in self.destroyed:
            raise AriRequestError(409, "Channel with given unique ID already exists")
        connection_id = str(uuid.uuid4())
        channelvars = {
            "MEDIA_WEBSOCKET_CONNECTION_ID": connection_id,
            "MEDIA_WEBSOCKET_OPTIMAL_FRAME_SIZE": str(rate // 50 * 2),
        }
        chan = SimChannel(
            id=channel_id,
            name=f"WebSocket/INCOMING/0x{next(self._ids):012x}",
            state="Down",
            kind="media",
            app_name="AppDial2",
            app_data="(Outgoing Line)",
            native_format=fmt,
            variables={**variables, **channelvars},
            app=app,
            media_host="",
            media_format=fmt,
        )
        self.channels[channel_id] = chan
        self._ws_waiting[connection_id] = (chan, control_form(q.get("transport_data", "")))
        self._emit(app, "Dial", dialstatus="", forward="", dialstring="INCOMING", peer=chan.to_json())
        self._notify()
        return web.json_response({**chan.to_json(), "channelvars": channelvars})

    async def _h_media(self, request: web.Request) -> web.StreamResponse:
        """The app connects for a WebSocket media channel: the channel answers and enters Stasis."""
        chan, form = self._ws_waiting.get(request.match_info["id"], (None, ControlForm.PLAIN))
        if chan is None or chan.destroyed:
            return web.Response(status=404, text="no such connection\n")
        if chan.media_leg is not None:
            return web.Response(status=409, text="already connected\n")
        ws = media_response()
        if not ws.can_prepare(request).ok:
            return web.Response(status=400, text="not a WebSocket upgrade\n")
        await ws.prepare(request)
        fmt = chan.media_format or "slin16"
        rate = SLIN_FORMAT_RATES[fmt]
        model = ChanWebsocketModel(
            frame_size=rate // 50 * 2,
            form=form,
            channel_id=chan.id,
            fmt=fmt,
            connection_id=request.match_info["id"],
            channel=chan.name,
        )
        if self.media_clock is None:
            self.media_clock = FrameClock(LoopClock())
        leg = self.websocket_legs(ws, model, self.media_clock, chan.id, rate)
        chan.media_leg = leg
        await ws.send_str(model.media_start())
        self._leg_watchers[chan.id] = self._spawn(self._watch_leg(chan, leg), f"leg-{chan.id}")
        chan.state = "Up"
        self._emit(chan.app, "ChannelStateChange", channel=chan.to_json())
        self._emit(
            chan.app, "Dial", dialstatus="ANSWER", forward="", dialstring="INCOMING", peer=chan.to_json()
        )
        self._enter_stasis(chan)
        self._notify()
        await leg.run()
        return ws

    async def _media_enters_stasis(self, chan: SimChannel, dialstring: str) -> None:
        if self.media_stasis_delay > 0:
            await asyncio.sleep(self.media_stasis_delay)
        else:
            await asyncio.sleep(0)
        if chan.destroyed:
            return
        self._emit(chan.app, "Dial", dialstatus="", forward="", dialstring=dialstring, peer=chan.to_json())
        chan.state = "Up"
        self._emit(chan.app, "ChannelStateChange", channel=chan.to_json())
        self._emit(
            chan.app, "Dial", dialstatus="ANSWER", forward="", dialstring=dialstring, peer=chan.to_json()
        )
        self._enter_stasis(chan)

    async def _watch_leg(self, chan: SimChannel, leg: MediaLeg) -> None:
        await leg.wait_closed()
        if not chan.destroyed:
            log.info("sim: media socket of %s closed by the application; hanging up", chan.id)
            self._leg_watchers.pop(chan.id, None)
            await self._destroy(chan, 16, hangup_request=True)
