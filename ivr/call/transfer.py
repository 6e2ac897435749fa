"""Transfer to an endpoint: originate the agent leg into the app, ring the caller, bridge on answer.

The caller hears ringback through the IVR's own media while the agent's phone rings. On answer the IVR's
media channel leaves the bridge and the agent joins it; busy (cause 17), no answer (cause 19/18) and the
step's timeout follow the step's failure branch with the caller back in the flow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import TYPE_CHECKING

import numpy as np

from ivr.ari.errors import AriError
from ivr.ari.models import ChannelDestroyed, ChannelHangupRequest, Dial, Event, StasisStart
from ivr.flow import actions as act
from ivr.flow import events as ev

if TYPE_CHECKING:
    from ivr.call.ari_app import AriCall

log = logging.getLogger(__name__)

TRANSFER_MARKER = "ivr-transfer"
"""First appArgs element of the agent legs the app originates (so they are never taken for callers)."""
BUSY_CAUSES = frozenset({17})
NO_ANSWER_CAUSES = frozenset({18, 19, 21})


def ringback(rate: int, seconds: float = 60.0) -> bytes:
    """North American ringback (440 + 480 Hz, 2 s on, 4 s off) at -16 dBFS, as s16le PCM."""
    cycle = int(rate * 6)
    on = int(rate * 2)
    t = np.arange(on) / rate
    tone = (np.sin(2 * np.pi * 440 * t) + np.sin(2 * np.pi * 480 * t)) * 0.08 * 32767
    one = np.zeros(cycle, dtype="<i2")
    one[:on] = tone.astype("<i2")
    return np.tile(one, max(1, int(seconds / 6))).tobytes()


class EndpointTransfer:
    def __init__(self, call: AriCall, action: act.Transfer) -> None:
        self.call = call
        self.action = action
        self.agent_id = f"{call.app.config.id_prefix}agent-{uuid.uuid4()}"
        self.bridged = False
        self._answered = asyncio.Event()
        self._destroyed = asyncio.Event()
        self._cause: int | None = None
        self._originated = False

    def owns(self, event: Event) -> bool:
        return self.agent_id in event.channel_ids

    def on_event(self, event: Event) -> None:
        if isinstance(event, StasisStart) and event.channel.id == self.agent_id:
            self._answered.set()
        elif isinstance(event, ChannelHangupRequest) and event.channel.id == self.agent_id:
            if event.cause is not None:
                self._cause = event.cause
        elif isinstance(event, ChannelDestroyed) and event.channel.id == self.agent_id:
            self._cause = event.cause if event.cause is not None else self._cause
            self._destroyed.set()
        elif isinstance(event, Dial) and event.dialstatus:
            log.debug("transfer %s: dial status %s", self.agent_id, event.dialstatus)

    async def run(self) -> ev.TransferCompleted | ev.TransferFailed:
        call = self.call
        app = call.app
        ari = app.ari
        session = call.session
        tone = session.play(ringback(session.rate)) if session is not None else None
        app.dispatcher.bind(self.agent_id, call.caller_id)
        caller = call.start_event.channel.caller
        try:
            try:
                await ari.originate(
                    self.action.endpoint or "",
                    app=app.config.app,
                    app_args=[TRANSFER_MARKER, call.caller_id],
                    caller_id=self.action.caller_id or f"{caller.name} <{caller.number}>".strip(),
                    timeout=self.action.timeout_s,
                    channel_id=self.agent_id,
                )
            except AriError as exc:
                log.warning("call %s: transfer to %s failed: %s", call.caller_id, self.action.endpoint, exc)
                return ev.TransferFailed("failed")
            self._originated = True
            answered = asyncio.ensure_future(self._answered.wait())
            destroyed = asyncio.ensure_future(self._destroyed.wait())
            try:
                await asyncio.wait(
                    {answered, destroyed},
                    timeout=self.action.timeout_s + 5,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                answered.cancel()
                destroyed.cancel()
            if self._answered.is_set() and not self._destroyed.is_set():
                if tone is not None and session is not None:
                    session.clear()  # whatever transport: AudioSocket stops, WebSocket media flushes
                try:
                    await ari.remove_channel(call.bridge_id, call.media_id)
                    await ari.add_channel(call.bridge_id, self.agent_id)
                except AriError as exc:
                    log.warning("call %s: bridging the agent failed: %s", call.caller_id, exc)
                    await self.cleanup()
                    return ev.TransferFailed("failed")
                self.bridged = True
                log.info("call %s: bridged with %s", call.caller_id, self.action.endpoint)
                return ev.TransferCompleted()
            await self.cleanup()
            if not self._destroyed.is_set():
                return ev.TransferFailed("timeout")
            if self._cause in BUSY_CAUSES:
                return ev.TransferFailed("busy", self._cause)
            if self._cause in NO_ANSWER_CAUSES:
                return ev.TransferFailed("no_answer", self._cause)
            return ev.TransferFailed("failed", self._cause)
        finally:
            if tone is not None and session is not None and not tone.done:
                session.clear()

    async def wait_end(self) -> None:
        """While bridged: return when the agent or the caller hangs up."""
        gone = asyncio.ensure_future(self.call._gone.wait())
        destroyed = asyncio.ensure_future(self._destroyed.wait())
        try:
            await asyncio.wait({gone, destroyed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            destroyed.cancel()

    async def cleanup(self) -> None:
        if self._originated and not self._destroyed.is_set():
            with contextlib.suppress(AriError):
                await self.call.app.ari.hangup(self.agent_id)
