"""One ARI call (:class:`AriCall`): set-up, flow and teardown of a caller that entered the app.

Per call, in order (each step under a timeout; a failure ends the call with one log line naming it):

1. ``answer`` the caller unless the dialplan did;
2. pick the media format: ``slin`` for narrowband callers (G.711, GSM, ``slin``), ``slin16`` for every
   wider one (G.722, ``slin16`` ... a Local channel's ``slin192``), from ``CHANNEL(audionativeformat)``,
   unless configured;
3. create a mixing bridge with an id we choose;
4. attach the media through the call's transport (:mod:`ivr.call.media_attach`: AudioSocket registers a
   UUID before ``externalMedia``, WebSocket media connects to Asterisk's ``/media/<id>`` after it), with
   a media channel id we choose and bound to this call's event route, so events that overtake the REST
   reply still find the call; the media channel's own ``StasisStart`` is recognised and never treated
   as a caller;
5. wait for the media channel's ``StasisStart`` (``addChannel`` before it is a 422), then bridge caller
   and media; a new call's flow is decided alongside steps 1-5;
6. run the flow; DTMF comes from ARI ``ChannelDtmfReceived`` only (Asterisk also forwards it over the
   media, 0x03 or DTMF_END: acting on both would count every key twice);
7. tear down whichever way the call ended: media channel deleted, bridge destroyed, caller hung up unless
   handed to the dialplan or an agent; nothing is left in Asterisk.

Steps 1-5, the media set-up, are a mixin's (:class:`~ivr.call.ari_setup.CallSetup`). How a call reaches
Asterisk is its :class:`CallLink` (:mod:`ivr.call.ari_link`); what it needs of the app that serves it is
:class:`CallHost` (the app, :mod:`ivr.call.ari_app`, is one). A call whose instance died comes back and
continues from its checkpoint (:mod:`ivr.call.resume`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from collections.abc import Mapping
from typing import Any, Protocol

from ivr.ari.errors import AriError
from ivr.ari.models import (
    ChannelDestroyed,
    ChannelDtmfReceived,
    ChannelHangupRequest,
    Event,
    StasisEnd,
    StasisStart,
)
from ivr.call.ari_config import AriAppConfig as AriAppConfig  # where callers import it from
from ivr.call.ari_link import CallLink
from ivr.call.ari_setup import NARROWBAND_FORMATS as NARROWBAND_FORMATS  # where callers import it from
from ivr.call.ari_setup import CallSetup, SetupHost
from ivr.call.ari_setup import media_format_for as media_format_for
from ivr.call.ari_start import ORIGINATE_PREFIX as ORIGINATE_PREFIX  # where callers import it from
from ivr.call.ari_start import new_call
from ivr.call.flows import FlowCatalog
from ivr.call.languages import call_speech
from ivr.call.lifecycle import CallLife, ReportSink
from ivr.call.media_attach import MediaAttach, MediaAttachments, SetupError
from ivr.call.ports import SpeechFactory
from ivr.call.report import CallReport
from ivr.call.resume import CallCheckpoints, Resumable, ResumeHost
from ivr.call.runtime import CallRuntime
from ivr.call.services import CallServices
from ivr.call.setup_gate import SetupGate, SetupQueueTimeout
from ivr.call.transfer import AriControl, EndpointTransfer
from ivr.flow import events as ev
from ivr.flow.engine import FlowEngine
from ivr.ops.metrics import Metrics
from ivr.transport import MediaTransport

log = logging.getLogger(__name__)


class CallHost(SetupHost, ResumeHost, Protocol):
    """What an :class:`AriCall` needs of the app serving it (:class:`ivr.call.ari_app.AriApp` is one)."""

    config: AriAppConfig
    services: CallServices
    media: MediaAttachments
    """How calls get their media (one strategy per transport)."""
    calls: dict[str, AriCall]
    """The live calls by caller channel id."""
    setup_gate: SetupGate
    """How many calls are set up at once (the rest wait their turn)."""
    reports: deque[CallReport]
    draining: bool
    flows: FlowCatalog
    speech: SpeechFactory
    metrics: Metrics | None
    on_report: ReportSink | None


class AriCall(CallSetup, Resumable):
    """One caller: setup, flow, teardown. Its handler gets the call's events in order.

    ``link`` is how the call reaches Asterisk (persistent or per-call). ``leftovers`` is set for a call
    Asterisk brought back on a reopened per-call socket: ``GET /applications/{app}`` of that socket, the
    channels and bridges the previous owner had in the call's application.
    """

    def __init__(
        self,
        app: CallHost,
        event: StasisStart,
        link: CallLink,
        *,
        leftovers: Mapping[str, Any] | None = None,
    ) -> None:
        self.app: CallHost = app
        self.link = link
        self.start_event = event
        self.caller_id = event.channel.id
        prefix = app.config.id_prefix
        self.bridge_id = f"{prefix}bridge-{uuid.uuid4()}"
        self.media_id = f"{app.config.media_prefix}{uuid.uuid4()}"
        self.life = CallLife(
            self.caller_id,
            metrics=app.metrics,
            sink=app.on_report,
            recent=app.reports,
            on_start=app.services.on_start,
        )
        self.media_in_stasis = asyncio.Event()
        self.runtime: CallRuntime | None = None
        self.session: MediaTransport | None = None
        self.attach: MediaAttach | None = None
        """The transport strategy that attached :attr:`session` (it also releases it)."""
        self.transfer: EndpointTransfer | None = None
        self.handed_off = False
        """The caller left for the dialplan (``continue``): not ours to hang up."""
        self.detached = False
        """Shutdown let go of this call (caller bridged with an agent): teardown leaves Asterisk alone."""
        self.leftovers: Mapping[str, Any] | None = leftovers
        store = app.services.checkpoints
        self.checkpoints = (
            CallCheckpoints(
                store, self.caller_id, self.caller_id, {"bridge": self.bridge_id, "media": self.media_id}
            )
            if store is not None
            else None
        )
        self.lost = False
        """Per-call mode: the call's socket closed with the caller still in Stasis (Asterisk reconnects,
        maybe to another instance, which resumes the call)."""
        self.superseded = False
        """Another :class:`AriCall` of this process drives the caller now (its reopened socket came back
        here): this one ends without a record."""
        self._gone = asyncio.Event()
        self._pending_dtmf: list[str] = []
        self._bridge_created = False
        self._bridge_creation: asyncio.Future[Any] | None = None
        self._media_created = False
        self._media_creation: asyncio.Future[Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self._running = False
        """The task has begun its body: from then on a cancel reaches it (see :meth:`_stop_task`)."""
        self._last_state: Mapping[str, Any] | None = None
        self._arrived = 0.0

    @property
    def gone(self) -> asyncio.Event:
        """Set once the caller has hung up, or we hung them up."""
        return self._gone

    # -- events ----------------------------------------------------------------------------------

    async def handle(self, event: Event) -> None:
        if isinstance(event, StasisStart):
            if event.channel.id == self.caller_id and self._task is None:
                self.begin()
            elif event.channel.id == self.media_id:
                self.media_in_stasis.set()
            elif self.transfer is not None:
                self.transfer.on_event(event)
            return
        if self.transfer is not None and self.transfer.owns(event):
            self.transfer.on_event(event)
            return
        if isinstance(event, ChannelDtmfReceived) and event.channel.id == self.caller_id:
            if self.runtime is not None:
                self.runtime.on_dtmf(event.digit)
            else:
                self._pending_dtmf.append(event.digit)  # pressed during setup: type-ahead
        elif isinstance(event, ChannelHangupRequest | StasisEnd | ChannelDestroyed):
            if event.channel.id == self.caller_id:
                self.caller_gone(f"caller {event.type}")
            elif event.channel.id == self.media_id and isinstance(event, ChannelDestroyed):
                self._media_created = False

    def begin(self) -> None:
        """Start the call (its caller's StasisStart, or a reopened per-call socket that has none)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"call-{self.caller_id}")

    def caller_gone(self, reason: str) -> None:
        if self._gone.is_set():
            return
        self._gone.set()
        if self.handed_off:
            return
        log.info("call %s: %s", self.caller_id, reason)
        if self.runtime is not None:
            self.runtime.caller_hung_up()
        else:
            self._stop_task("caller_hangup", reason)

    def connection_lost(self, *, superseded: bool = False) -> None:
        """Per-call mode: the call's socket is gone while the caller is still in Stasis. Asterisk
        reconnects (through a balancer: maybe to another instance), and whoever gets the socket resumes
        the call from its checkpoint; this call stops without touching Asterisk (its REST could not
        reach it anyway) and, once another owner has the call, without a record."""
        if self.life.ended or self._gone.is_set():
            return
        self.lost = True
        self.superseded = self.superseded or superseded
        self.handed_off = True  # nothing of ours to hang up: the caller goes on
        if self.checkpoints is not None:
            self.checkpoints.stopped = True
        log.info(
            "call %s: %s",
            self.caller_id,
            "its reopened ARI socket came back here: the new one drives it"
            if superseded
            else "the per-call ARI connection was lost; Asterisk reconnects it, maybe to another instance",
        )
        if self.runtime is not None:
            self.runtime.caller_hung_up()  # ends the flow without hanging anything up
        else:
            self._stop_task("aborted", "the per-call ARI connection was lost before the call began")

    @property
    def report(self) -> CallReport:
        return self.life.report

    @property
    def done(self) -> asyncio.Event:
        return self.life.done

    @property
    def with_agent(self) -> bool:
        return self.transfer is not None and self.transfer.bridged

    def abort(self, reason: str, goodbye: str | None = None) -> None:
        """End the call from our side: goodbye (if the flow still runs), hang up, clean up."""
        if self.runtime is not None and not self.runtime.finished:
            self.life.fail("aborted", reason)
            self.runtime.abort(reason, goodbye)
        elif self._task is not None and not self._task.done():
            self.life.fail("aborted", reason)
            self._stop_task("aborted", reason)
        elif self._task is None:  # its StasisStart is still queued: end it before it begins, with a record
            self.life.fail("aborted", reason)
            self.begin()

    def _stop_task(self, outcome: str, reason: str) -> None:
        """Stop the call's body. A task cancelled before its first step never runs its coroutine at all
        (no teardown, no record, ``done`` never set: shutdown then waited for the call forever), so a
        task not running yet is left to start with ``outcome`` set: its body ends at once."""
        if not self._running:
            self.life.fail(outcome, reason)
        elif self._task is not None and not self._task.done():
            self._task.cancel()

    # -- lifecycle -------------------------------------------------------------------------------

    async def _run(self) -> None:
        self._running = True
        self._arrived = asyncio.get_running_loop().time()
        try:
            await self.life.run(
                self._body,
                teardown=self._teardown,
                cancelled_outcome=lambda: "caller_hangup" if self._gone.is_set() else "aborted",
            )
        finally:
            finishing = self.life.finishing
            if finishing is None or finishing.done():
                self._forget()
            else:  # cancelled again during its teardown, which goes on (shielded): leave when it ends
                finishing.add_done_callback(lambda _: self._forget())

    def _forget(self) -> None:
        if self.app.calls.get(self.caller_id) is self:
            del self.app.calls[self.caller_id]

    async def _body(self) -> None:
        app = self.app
        caller = self.start_event.channel.caller
        self.report.caller = f"{caller.name} <{caller.number}>" if caller.name else caller.number
        if self.report.outcome:  # aborted (shutdown) or gone before it began: teardown does the rest
            return
        if len(app.calls) > app.config.max_calls or app.draining:
            await self._busy()
            return
        if self.checkpoints is not None:  # a call that comes back: found while setup runs
            self.checkpoints.start_lookup()
        try:
            if await self._adopted():
                return
            async with app.setup_gate.slot() as waited:
                if app.metrics is not None:
                    app.metrics.observe_setup_wait(waited)
                decided = await self._set_up_and_decide()
            await self._run_flow(decided)
        except SetupQueueTimeout as exc:
            await self._busy(str(exc))
        except SetupError as exc:
            self.report.outcome, self.report.reason = "error", str(exc)
            self.report.errors.append(str(exc))
            log.warning("call %s: %s", self.caller_id, exc)

    async def _busy(self, reason: str | None = None) -> None:
        """Over the concurrent-call limit, shutting down, or no set-up slot in time: the caller hears
        congestion, never silence."""
        if reason is None:
            reason = (
                "shutting down"
                if self.app.draining
                else f"over the limit of {self.app.config.max_calls} calls"
            )
        log.warning("call %s: refused with congestion: %s", self.caller_id, reason)
        self.report.outcome, self.report.reason = "busy", reason
        with contextlib.suppress(AriError):
            await self.link.ari.hangup(self.caller_id, reason="congestion")
        self._gone.set()

    async def _flow(self) -> tuple[FlowEngine, ev.CallStarted | ev.CallResumed]:
        """The call's engine and its first event: restored from its checkpoint, or a new call."""
        engine = await self._resumed_engine()
        if engine is not None:
            return engine, ev.CallResumed(self.caller_id)
        reopened = self.leftovers is not None and self.checkpoints is not None
        known = self.checkpoints.stasis_args() if reopened and self.checkpoints is not None else None
        try:
            return await new_call(self.link.ari, self.start_event, self.app.flows, known_args=known)
        except LookupError as exc:
            raise SetupError("flow", str(exc)) from None

    # -- the flow --------------------------------------------------------------------------------

    async def _set_up_and_decide(self) -> tuple[FlowEngine, ev.CallStarted | ev.CallResumed] | None:
        """Set up the media and decide the flow; None when another instance took the call over.

        A new call's flow (its channel variables: one or two REST round trips) is decided while the media
        is set up, so the runtime starts listening the moment the caller is bridged: under a burst of
        set-ups those round trips took over a second after the bridge. A call that may continue a
        checkpoint decides after the set-up, as the takeover's clean-up of the old bridge expects.
        """
        if self.checkpoints is not None:
            await self._setup()
            return await self._decide()
        decided = asyncio.ensure_future(self._decide())
        try:
            await self._setup()
        except BaseException:
            decided.cancel()
            await asyncio.gather(decided, return_exceptions=True)
            raise
        return await decided

    async def _decide(self) -> tuple[FlowEngine, ev.CallStarted | ev.CallResumed] | None:
        if (await self._claimed()).lost:  # another instance took the call over first: it is theirs
            return None
        return await self._flow()

    async def _run_flow(self, decided: tuple[FlowEngine, ev.CallStarted | ev.CallResumed] | None) -> None:
        assert self.session is not None
        app = self.app
        if decided is None:
            self.connection_lost(superseded=True)
            return
        engine, first = decided
        self.runtime = CallRuntime(
            engine=engine,
            media=self.session,
            control=AriControl(self),
            speech=call_speech(app.speech, engine.settings, self.session.rate),
            call_id=self.caller_id,
            dtmf_from_media=False,
            services=app.services,
            report=self.report,
        )
        self.runtime.on_step = self._save_checkpoint
        for digit in self._pending_dtmf:
            self.runtime.on_dtmf(digit)
        self._pending_dtmf.clear()
        if self._gone.is_set() or self.lost:
            self.runtime.caller_hung_up()
        # Asterisk's linkedid joins our record with CDR/CEL; fetched alongside, never delaying the greeting.
        linked = asyncio.ensure_future(self.link.ari.get_variable(self.caller_id, "CHANNEL(linkedid)"))
        linked.add_done_callback(self._note_linkedid)
        try:
            await self.runtime.run(first)
        finally:
            if not linked.done():
                linked.cancel()
        if isinstance(first, ev.CallStarted):
            self.report.direction = first.direction
            if self.runtime.first_audio_at is not None:
                self.report.greeting_latency_ms = (self.runtime.first_audio_at - self._arrived) * 1000
        self.report.flow = engine.library.root
        if self.transfer is not None and self.transfer.bridged:
            # Caller and agent talk in our bridge: drop the IVR media now, hang up the rest when one leaves.
            if self.checkpoints is not None:  # a takeover then keeps the conversation
                self.checkpoints.save(
                    engine, self.report, linkedid=self.report.linkedid,
                    bridged=self.transfer.agent_id, engine_state=self._last_state,
                )  # fmt: skip
            await self._release_media("transferred")
            if self._media_created:
                with contextlib.suppress(AriError):
                    await self.link.ari.hangup(self.media_id)
                self._media_created = False
            await self.transfer.wait_end()

    def _note_linkedid(self, linked: asyncio.Future[str]) -> None:
        if not linked.cancelled() and linked.exception() is None:
            self.report.linkedid = linked.result() or self.report.linkedid

    async def _release_media(self, reason: str) -> None:
        if self.session is not None and not self.session.closed and self.attach is not None:
            await self.attach.release(self.session, reason)

    def _release_route(self) -> None:
        """Unbind every id this call routed, so its event task ends: the caller's id alone may already be
        gone (ChannelDestroyed unbinds it), and a leftover bridge id would keep the task forever."""
        channels = [self.caller_id, self.media_id]
        if self.transfer is not None:
            channels.append(self.transfer.agent_id)
        self.link.release(channels, [self.bridge_id])

    async def _teardown(self) -> None:
        ari = self.link.ari
        if self.checkpoints is not None:
            self.checkpoints.cancel()
        if self.detached:
            log.info("call %s: left bridged with the agent at shutdown", self.caller_id)
            self._release_route()
            return
        await self._release_media("call ended")
        if self.lost:
            await self._settle_lost()
            self._release_route()
            return  # its socket is gone: nothing of ours can be reached (the next owner removes it)
        if self.transfer is not None:
            await self.transfer.cleanup()
        if self._media_created:
            await self._settled(self._media_creation)
            with contextlib.suppress(AriError):
                await ari.hangup(self.media_id)
        if self._bridge_created:
            await self._settled(self._bridge_creation)
            with contextlib.suppress(AriError):
                await ari.destroy_bridge(self.bridge_id)
        if not self._gone.is_set() and not self.handed_off:
            with contextlib.suppress(AriError):
                await ari.hangup(self.caller_id)
        self._release_route()
