"""Telephony actions of an ARI call: hang up, continue in the dialplan, transfer to an endpoint.

Transfer to an endpoint: originate the agent leg into the app, ring the caller, bridge on answer. The
caller hears ringback through the IVR's own media while the agent's phone rings. On answer the IVR's
media channel leaves the bridge and the agent joins it; busy (cause 17), no answer (cause 19/18) and the
step's timeout follow the step's failure branch with the caller back in the flow. The agent leg names
the call's Stasis application (per-call mode: the socket's own), so its events reach the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ivr.ari.errors import AriError, NotFound
from ivr.ari.models import ChannelDestroyed, ChannelHangupRequest, Dial, Event, StasisStart
from ivr.call.ari_config import AriAppConfig
from ivr.call.ari_link import CallLink
from ivr.flow import actions as act
from ivr.flow import events as ev

if TYPE_CHECKING:
    from ivr.transport import MediaTransport

log = logging.getLogger(__name__)

TRANSFER_MARKER = "ivr-transfer"
"""First appArgs element of the agent legs the app originates (so they are never taken for callers)."""
BUSY_CAUSES = frozenset({17})
NO_ANSWER_CAUSES = frozenset({18, 19, 21})


@functools.cache
def ringback(rate: int, seconds: float = 60.0) -> bytes:
    """North American ringback (440 + 480 Hz, 2 s on, 4 s off) at -16 dBFS, as s16le PCM.

    Made once per rate and shared by every transfer (immutable bytes; a minute at 16 kHz is 1.9 MB)."""
    cycle = int(rate * 6)
    on = int(rate * 2)
    t = np.arange(on) / rate
    tone = (np.sin(2 * np.pi * 440 * t) + np.sin(2 * np.pi * 480 * t)) * 0.08 * 32767
    one = np.zeros(cycle, dtype="<i2")
    one[:on] = tone.astype("<i2")
    return np.tile(one, max(1, int(seconds / 6))).tobytes()


class _Configured(Protocol):
    @property
    def config(self) -> AriAppConfig: ...


class _AgentResources(Protocol):
    resources: dict[str, str]
    """What a next owner of the call must clear or keep (the agent leg among them)."""


class TransferCall(Protocol):
    """What the telephony actions need of an ARI call (:class:`~ivr.call.ari_call.AriCall` is one)."""

    handed_off: bool
    """The caller left for the dialplan: not ours to hang up."""
    transfer: EndpointTransfer | None

    @property
    def app(self) -> _Configured: ...

    @property
    def link(self) -> CallLink: ...

    @property
    def start_event(self) -> StasisStart: ...

    @property
    def caller_id(self) -> str: ...

    @property
    def bridge_id(self) -> str: ...

    @property
    def media_id(self) -> str: ...

    @property
    def session(self) -> MediaTransport | None: ...

    @property
    def checkpoints(self) -> _AgentResources | None: ...

    @property
    def gone(self) -> asyncio.Event:
        """Set once the caller has hung up, or we hung them up."""


class EndpointTransfer:
    def __init__(
        self, call: TransferCall, action: act.Transfer | None, *, agent_id: str | None = None
    ) -> None:
        self.call = call
        self.action = action
        self.agent_id = agent_id or f"{call.app.config.id_prefix}agent-{uuid.uuid4()}"
        if call.checkpoints is not None:
            call.checkpoints.resources["agent"] = self.agent_id  # a next owner knows the leg
        self.bridged = False
        self._answered = asyncio.Event()
        self._destroyed = asyncio.Event()
        self._cause: int | None = None
        self._originated = False

    @classmethod
    def adopt(cls, call: TransferCall, agent_id: str) -> EndpointTransfer:
        """A caller already bridged with this agent leg (by the call's previous owner): only its end is
        left to see to."""
        transfer = cls(call, None, agent_id=agent_id)
        transfer.bridged = transfer._originated = True
        return transfer

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
        action = self.action
        assert action is not None
        ari = call.link.ari
        session = call.session
        tone = session.play(ringback(session.rate)) if session is not None else None
        call.link.bind(self.agent_id)
        caller = call.start_event.channel.caller
        try:
            try:
                await ari.originate(
                    action.endpoint or "",
                    app=call.link.app,
                    app_args=[TRANSFER_MARKER, call.caller_id],
                    caller_id=action.caller_id or f"{caller.name} <{caller.number}>".strip(),
                    timeout=action.timeout_s,
                    channel_id=self.agent_id,
                )
            except AriError as exc:
                log.warning("call %s: transfer to %s failed: %s", call.caller_id, action.endpoint, exc)
                return ev.TransferFailed("failed")
            self._originated = True
            answered = asyncio.ensure_future(self._answered.wait())
            destroyed = asyncio.ensure_future(self._destroyed.wait())
            try:
                await asyncio.wait(
                    {answered, destroyed},
                    timeout=action.timeout_s + 5,
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
                log.info("call %s: bridged with %s", call.caller_id, action.endpoint)
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
        gone = asyncio.ensure_future(self.call.gone.wait())
        destroyed = asyncio.ensure_future(self._destroyed.wait())
        try:
            await asyncio.wait({gone, destroyed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            destroyed.cancel()

    async def cleanup(self) -> None:
        if self._originated and not self._destroyed.is_set():
            with contextlib.suppress(AriError):
                await self.call.link.ari.hangup(self.agent_id)


class AriControl:
    """Telephony actions of one ARI call."""

    def __init__(self, call: TransferCall) -> None:
        self.call = call

    async def hangup(self, reason: str) -> None:
        call = self.call
        if not call.gone.is_set():
            with contextlib.suppress(NotFound):
                await call.link.ari.hangup(call.caller_id, reason="normal")
            call.gone.set()

    async def transfer(
        self, action: act.Transfer, variables: Mapping[str, str]
    ) -> ev.TransferCompleted | ev.TransferFailed:
        call = self.call
        ari = call.link.ari
        for name, value in variables.items():
            with contextlib.suppress(AriError):
                await ari.set_variable(call.caller_id, name, value)
        if action.to_dialplan:
            assert action.extension is not None
            call.handed_off = True
            try:
                await ari.continue_in_dialplan(
                    call.caller_id,
                    context=action.context,
                    extension=action.extension,
                    priority=action.priority,
                )
            except AriError:
                call.handed_off = False
                return ev.TransferFailed("failed")
            log.info(
                "call %s: continued in dialplan %s,%s,%d",
                call.caller_id,
                action.context,
                action.extension,
                action.priority,
            )
            return ev.TransferCompleted()
        call.transfer = EndpointTransfer(call, action)
        return await call.transfer.run()
