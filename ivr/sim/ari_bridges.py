"""The simulated ARI's bridge resource: ``/bridges`` and ``/bridges/{id}/addChannel|removeChannel``.

Bridge types as Asterisk accepts them, the 409/400/422 answers of a real one, and the bridge events
(``ChannelEnteredBridge``, ``ChannelLeftBridge``, ``BridgeDestroyed``).
"""

from __future__ import annotations

import uuid

from aiohttp import web

from ivr.sim.ari_core import AriRequestError, SimCore
from ivr.sim.ari_state import SimBridge, SimChannel


class BridgeRoutes(SimCore):
    """REST handlers of ``/bridges``."""

    async def _h_list_bridges(self, request: web.Request) -> web.Response:
        return web.json_response([b.to_json() for b in self.bridges.values()])

    async def _h_get_bridge(self, request: web.Request) -> web.Response:
        return web.json_response(self._bridge(request.match_info["id"]).to_json())

    async def _h_create_bridge(self, request: web.Request) -> web.Response:
        q = request.query
        bridge_id = request.match_info.get("id") or q.get("bridgeId") or str(uuid.uuid4())
        if bridge_id in self.bridges:
            raise AriRequestError(409, "Bridge with the same bridgeId already exists")
        types = [t.strip() for t in q.get("type", "mixing").split(",") if t.strip()]
        allowed = {"mixing", "holding", "dtmf_events", "proxy_media", "video_sfu", "video_single"}
        if any(t not in allowed for t in types):
            raise AriRequestError(400, "Invalid bridge type")
        bridge_type = "holding" if "holding" in types else "mixing"
        bridge = SimBridge(id=bridge_id, bridge_type=bridge_type, name=q.get("name", ""))
        self.bridges[bridge_id] = bridge
        self._notify()
        return web.json_response(bridge.to_json())

    async def _h_destroy_bridge(self, request: web.Request) -> web.Response:
        bridge = self._bridge(request.match_info["id"])
        for channel_id in list(bridge.channels):
            chan = self.channels.get(channel_id)
            if chan is not None:
                self._leave_bridge(chan)
        del self.bridges[bridge.id]
        for app in sorted(bridge.apps):
            self._emit(app, "BridgeDestroyed", bridge=bridge.to_json())
        self._notify()
        return self._no_content()

    def _channel_params(self, request: web.Request) -> list[str]:
        ids = [c for c in request.query.get("channel", "").split(",") if c]
        if not ids:
            raise AriRequestError(400, "Missing parameter channel")
        return ids

    async def _h_add_channel(self, request: web.Request) -> web.Response:
        bridge = self._bridge(request.match_info["id"])
        ids = self._channel_params(request)
        chans: list[SimChannel] = []
        for channel_id in ids:
            chan = self.channels.get(channel_id)
            if chan is None:
                raise AriRequestError(400, "Channel not found")
            if not chan.in_stasis:
                raise AriRequestError(422, "Channel not in Stasis application")
            chans.append(chan)
        for chan in chans:
            if chan.bridge_id == bridge.id:
                continue
            self._leave_bridge(chan)
            bridge.channels.append(chan.id)
            chan.bridge_id = bridge.id
            if chan.app is not None:
                bridge.apps.add(chan.app)
            self._emit(chan.app, "ChannelEnteredBridge", bridge=bridge.to_json(), channel=chan.to_json())
        self._notify()
        return self._no_content()

    async def _h_remove_channel(self, request: web.Request) -> web.Response:
        bridge = self._bridge(request.match_info["id"])
        ids = self._channel_params(request)
        chans: list[SimChannel] = []
        for channel_id in ids:
            chan = self.channels.get(channel_id)
            if chan is None:
                raise AriRequestError(400, "Channel not found")
            if chan.bridge_id != bridge.id:
                raise AriRequestError(422, "Channel not in this bridge")
            chans.append(chan)
        for chan in chans:
            self._leave_bridge(chan)
        self._notify()
        return self._no_content()
