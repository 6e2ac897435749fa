"""The simulated ARI's channel resource: ``/channels`` and ``/channels/{id}/...`` for existing channels.

Listing, hangup (``reason`` / ``reason_code`` as Asterisk maps them), answer, ring, continue, redirect,
DTMF and channel variables (with the dialplan functions an IVR reads). Making channels is elsewhere:
originate in :mod:`ivr.sim.ari_originate`, externalMedia in :mod:`ivr.sim.ari_external_media`.
"""

from __future__ import annotations

from aiohttp import web

from ivr.sim.ari_core import AriRequestError, SimCore, int_param
from ivr.sim.ari_state import HANGUP_REASONS, SimChannel


class ChannelRoutes(SimCore):
    """REST handlers of ``/channels`` for channels that already exist."""

    async def _h_list_channels(self, request: web.Request) -> web.Response:
        return web.json_response([c.to_json() for c in self.channels.values()])

    async def _h_get_channel(self, request: web.Request) -> web.Response:
        return web.json_response(self._channel(request.match_info["id"]).to_json())

    async def _h_hangup(self, request: web.Request) -> web.Response:
        chan = self._channel(request.match_info["id"])
        reason = request.query.get("reason")
        code = request.query.get("reason_code")
        if reason is not None and code is not None:
            raise AriRequestError(400, "The reason and reason_code can't both be specified")
        cause = 16
        if code is not None:
            if not code.isdigit():
                raise AriRequestError(400, "Invalid reason for hangup provided")
            cause = int(code)
        elif reason is not None:
            if reason not in HANGUP_REASONS:
                raise AriRequestError(400, "Invalid reason for hangup provided")
            cause = HANGUP_REASONS[reason]
        await self._destroy(chan, cause, hangup_request=True, soft=True)
        return self._no_content()

    async def _h_answer(self, request: web.Request) -> web.Response:
        chan = self._control(request.match_info["id"])
        if chan.state != "Up":
            chan.state = "Up"
            chan.ringing = False
            self._emit(chan.app, "ChannelStateChange", channel=chan.to_json())
        return self._no_content()

    async def _h_ring(self, request: web.Request) -> web.Response:
        self._control(request.match_info["id"]).ringing = True
        return self._no_content()

    async def _h_ring_stop(self, request: web.Request) -> web.Response:
        self._control(request.match_info["id"]).ringing = False
        return self._no_content()

    async def _h_continue(self, request: web.Request) -> web.Response:
        chan = self._control(request.match_info["id"])
        q = request.query
        context = q.get("context") or chan.context
        exten = q.get("extension") or chan.exten
        priority = int_param(q, "priority", chan.priority + 1 if not q.get("extension") else 1)
        self._leave_bridge(chan)
        chan.in_stasis = False
        chan.continued_to = (context, exten, priority)
        self._emit(chan.app, "StasisEnd", channel=chan.to_json())
        chan.app = None  # back in the dialplan: the application gets no more events for it
        chan.context, chan.exten, chan.priority = context, exten, priority
        chan.app_name, chan.app_data = "", ""
        self._notify()
        return self._no_content()

    async def _h_redirect(self, request: web.Request) -> web.Response:
        chan = self._control(request.match_info["id"])
        endpoint = request.query.get("endpoint", "")
        if not endpoint:
            raise AriRequestError(400, "Endpoint parameter not provided")
        if endpoint.split("/", 1)[0].lower() != chan.tech.lower():
            raise AriRequestError(422, "Endpoint is not the same type as the channel")
        chan.redirected_to = endpoint
        self._notify()
        return self._no_content()

    async def _h_dtmf(self, request: web.Request) -> web.Response:
        chan = self._control(request.match_info["id"])
        dtmf = request.query.get("dtmf", "")
        if not dtmf:
            raise AriRequestError(400, "DTMF is required")
        chan.dtmf_sent.append(dtmf)
        self._notify()
        return self._no_content()

    async def _h_get_var(self, request: web.Request) -> web.Response:
        chan = self._channel(request.match_info["id"])
        name = request.query.get("variable", "")
        if not name:
            raise AriRequestError(400, "Variable name is required")
        if name.endswith(")"):
            value = self._read_function(chan, name)
            if value is None:
                raise AriRequestError(500, "Unable to read provided function")
        else:
            found = chan.variables.get(name)
            if found is None:
                raise AriRequestError(404, "Provided variable was not found")
            value = found
        return web.json_response({"value": value})

    @staticmethod
    def _read_function(chan: SimChannel, name: str) -> str | None:
        known = {
            "CHANNEL(audionativeformat)": f"({chan.native_format})",
            "CHANNEL(name)": chan.name,
            "CHANNEL(state)": chan.state,
            "CALLERID(num)": chan.caller[1],
            "CALLERID(name)": chan.caller[0],
            "CALLERID(all)": f'"{chan.caller[0]}" <{chan.caller[1]}>',
        }
        return known.get(name, chan.variables.get(name))

    async def _h_set_var(self, request: web.Request) -> web.Response:
        chan = self._control(request.match_info["id"])
        name = request.query.get("variable", "")
        if not name:
            raise AriRequestError(400, "Variable name is required")
        value = request.query.get("value", "")
        chan.variables[name] = value
        self._emit(chan.app, "ChannelVarset", variable=name, value=value, channel=chan.to_json())
        return self._no_content()
