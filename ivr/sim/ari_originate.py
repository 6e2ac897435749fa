"""Originated channels of the simulated ARI: ``POST /channels``, the dial's progress, scripted outcomes.

``POST /channels`` returns a ``Down`` channel at once; a task then plays the dial (``Dial`` events) to
the outcome a test scripted with :meth:`OriginateRoutes.script_originate` (answered after 20 ms if none).
"""

from __future__ import annotations

import asyncio
import fnmatch

from aiohttp import web

from ivr.sim.ari_core import AriRequestError, OriginateOutcome, SimCore, SimError, int_param
from ivr.sim.ari_state import SimChannel, parse_callerid

_DIALSTATUS = {"busy": ("BUSY", 17), "noanswer": ("NOANSWER", 19), "congestion": ("CONGESTION", 34)}


class OriginateRoutes(SimCore):
    """``POST /channels[/{id}]`` and the Python API that scripts and answers originated channels."""

    async def _h_originate(self, request: web.Request) -> web.Response:
        q = request.query
        variables = await self._body_variables(request)
        endpoint = q.get("endpoint", "")
        if not endpoint:
            raise AriRequestError(400, "Endpoint must be specified")
        app = q.get("app", "")
        if not app:
            raise AriRequestError(400, "Application or extension must be specified (the simulator needs app)")
        if "/" not in endpoint:
            raise AriRequestError(400, "Invalid endpoint specified")
        channel_id = request.match_info.get("id") or q.get("channelId") or self._new_id()
        if channel_id in self.channels or channel_id in self.destroyed:
            raise AriRequestError(409, "Channel with given unique ID already exists")
        timeout = int_param(q, "timeout", 30)
        caller = parse_callerid(q["callerId"]) if q.get("callerId") else ("", "")
        seq = next(self._ids)
        name = f"{endpoint}-{seq:08x};1" if endpoint.startswith("Local/") else f"{endpoint}-{seq:08x}"
        app_args = q.get("appArgs", "")
        chan = SimChannel(
            id=channel_id,
            name=name,
            state="Down",
            kind="outbound",
            caller=caller,
            connected=caller,
            app_name="AppDial2",
            app_data="(Outgoing Line)",
            variables=dict(variables),
            app=app,
            args=app_args.split(",") if app_args else [],
            dialstring=endpoint.split("/", 1)[1],
        )
        self.channels[channel_id] = chan
        outcome = self._take_outcome(endpoint)
        self._dials[channel_id] = asyncio.get_running_loop().create_future()
        self._spawn(self._run_originate(chan, outcome, timeout), f"originate-{channel_id}")
        self._notify()
        return web.json_response(chan.to_json())

    def script_originate(self, outcome: OriginateOutcome | str, endpoint: str = "*") -> None:
        """Queue the outcome of the next originate whose endpoint matches ``endpoint`` (fnmatch pattern).

        Unscripted originates are answered after 20 ms.
        """
        if isinstance(outcome, str):
            outcome = OriginateOutcome(outcome)
        self._outcomes.append((endpoint, outcome))

    def _take_outcome(self, endpoint: str) -> OriginateOutcome:
        for i, (pattern, outcome) in enumerate(self._outcomes):
            if fnmatch.fnmatchcase(endpoint, pattern):
                del self._outcomes[i]
                return outcome
        return OriginateOutcome()

    async def _run_originate(self, chan: SimChannel, outcome: OriginateOutcome, timeout: int) -> None:
        dial = self._dials[chan.id]
        await asyncio.sleep(0)
        if chan.destroyed:
            return
        dialstring = chan.dialstring
        self._emit(chan.app, "Dial", dialstatus="", forward="", dialstring=dialstring, peer=chan.to_json())
        no_answer_after = float(timeout) if timeout > 0 else None
        if outcome.result == "ring":
            wait, default = no_answer_after, "noanswer"
        elif outcome.result == "noanswer":
            wait, default = (outcome.delay if outcome.delay is not None else no_answer_after), "noanswer"
        else:
            wait, default = (outcome.delay or 0.0), outcome.result
        try:
            result = await asyncio.wait_for(asyncio.shield(dial), timeout=wait)
        except TimeoutError:
            result = default
        self._dials.pop(chan.id, None)
        if chan.destroyed or result == "cancel":
            return  # hung up while ringing: _destroy sent Dial CANCEL
        if result == "answer":
            chan.state = "Up"
            self._emit(chan.app, "ChannelStateChange", channel=chan.to_json())
            self._emit(
                chan.app, "Dial", dialstatus="ANSWER", forward="", dialstring=dialstring, peer=chan.to_json()
            )
            self._enter_stasis(chan)
            self._notify()
            return
        status, cause = _DIALSTATUS[result]
        self._emit(
            chan.app, "Dial", dialstatus=status, forward="", dialstring=dialstring, peer=chan.to_json()
        )
        await self._destroy(chan, cause, hangup_request=False)

    async def answer_outbound(self, channel_id: str) -> None:
        """Answer an originated channel scripted with ``OriginateOutcome("ring")``."""
        dial = self._dials.get(channel_id)
        if dial is None or dial.done():
            raise SimError(f"channel {channel_id} is not ringing")
        dial.set_result("answer")
        await self.wait_for(lambda: channel_id not in self._dials)
