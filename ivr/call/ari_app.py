"""ARI mode: callers arrive by ``Stasis(ivr,flow=...)``; the app gives each its own :class:`AriCall`
(:mod:`ivr.call.ari_call`: media channel, flow, teardown) and routes every event to its call's task.

The same app serves both ARI deployments; how a call reaches Asterisk is its :class:`CallLink`
(:mod:`ivr.call.ari_link`): the shared REST client and events socket of persistent mode, or the call's
own socket in per-call mode (:mod:`ivr.call.percall_calls` hands each one to an :class:`AriCall`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from ivr.ari.client import AriClient
from ivr.ari.dispatcher import EventDispatcher
from ivr.ari.errors import AriError
from ivr.ari.events import EventStream
from ivr.ari.models import (
    ChannelDestroyed,
    Event,
    StasisStart,
)
from ivr.audiosocket.server import AudioSocketServer
from ivr.call.ari_call import NARROWBAND_FORMATS as NARROWBAND_FORMATS
from ivr.call.ari_call import AriAppConfig as AriAppConfig
from ivr.call.ari_call import AriCall as AriCall
from ivr.call.ari_call import media_format_for as media_format_for
from ivr.call.ari_link import SharedLink
from ivr.call.ari_start import ORIGINATE_PREFIX as ORIGINATE_PREFIX  # where callers import it from
from ivr.call.lifecycle import CallLife
from ivr.call.media_attach import (
    AudioSocketAttach,
    MediaAttachments,
    WebSocketAttach,
)
from ivr.call.report import CallReport
from ivr.call.services import CallServices
from ivr.call.setup_gate import SetupGate
from ivr.call.transfer import TRANSFER_MARKER
from ivr.websocket.client import WebSocketMediaClient

log = logging.getLogger(__name__)


class AriApp:
    """The Stasis application: one :class:`AriCall` per caller, every event in its call's own task."""

    def __init__(
        self,
        *,
        ari: AriClient | None,
        audiosocket: AudioSocketServer,
        services: CallServices,
        config: AriAppConfig,
        websocket: WebSocketMediaClient | None = None,
    ) -> None:
        """``websocket``: the process's WebSocket media client, when calls may use WebSocket media."""
        self.services = services
        self.metrics = services.metrics
        self.ari = ari
        """The shared REST client of persistent mode (None in per-call mode: each call has its own)."""
        self.audiosocket = audiosocket
        self.media = MediaAttachments(
            config.media,
            AudioSocketAttach(audiosocket, config.advertise),
            WebSocketAttach(websocket) if websocket is not None else None,
        )
        """How calls get their media (one strategy per transport)."""
        self.flows = services.flows
        self.speech = services.speech
        self.config = config
        self.on_report = services.on_report
        self.calls: dict[str, AriCall] = {}
        self.dispatcher = EventDispatcher(self._new_call, unrouted=self._unrouted)
        self.stream: EventStream | None = None
        self.reports: deque[CallReport] = deque(maxlen=services.recent_reports)
        """The most recent finished calls (records keep them all): bounded, a long-running app never grows."""
        self.draining = False
        self.setup_gate = SetupGate(
            config.setup_concurrency,
            config.setup_queue_seconds,
            on_waiting=self.metrics.setup_waiting if self.metrics is not None else None,
        )
        """At most ``setup_concurrency`` calls set up at once: a burst cannot starve them all."""

    async def start(self, *, heartbeat: float = 4.0, connect_timeout: float = 10.0) -> None:
        """Persistent mode: open the app's events socket."""
        assert self.ari is not None, "persistent mode needs the REST client"
        self.stream = EventStream(
            self.ari,
            self.config.app,
            self.dispatcher.dispatch,
            on_connected=self._on_connected,
            heartbeat=heartbeat,
        )
        self.stream.start()
        await self.stream.wait_connected(connect_timeout)

    async def drain(self, grace: float, goodbye: str | None = None) -> None:
        """Graceful shutdown: take no new calls, let live ones finish for ``grace`` seconds, then say
        ``goodbye`` and hang up the rest. Calls bridged with an agent are not touched."""
        self.draining = True

        def busy() -> list[AriCall]:
            return [c for c in self.calls.values() if not c.with_agent]

        if busy():
            log.info("draining: %d calls may finish within %g s", len(busy()), grace)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                while busy():  # noqa: ASYNC110 - calls end on their own schedule
                    await asyncio.sleep(0.1)
        left = busy()
        for call in left:
            call.abort("shutting down", goodbye)
        await asyncio.gather(*(c.done.wait() for c in left), return_exceptions=True)

    async def close(self, *, keep_agent_calls: bool = False) -> None:
        """Hang up every call the app still owns, then stop listening.

        With ``keep_agent_calls`` (graceful shutdown) callers talking to an agent are left bridged in
        Asterisk: the process lets go of them instead of cutting the conversation.
        """
        calls = list(self.calls.values())
        for call in calls:
            if keep_agent_calls and call.with_agent:
                call.detached = True
            call.abort("application stopping")
        await asyncio.gather(*(c.done.wait() for c in calls), return_exceptions=True)
        if self.stream is not None:
            await self.stream.close()
        await self.dispatcher.close()

    def _new_call(self, event: StasisStart) -> Callable[[Event], Awaitable[None]] | None:
        channel = event.channel
        if channel.is_audiosocket or channel.id.startswith(self.config.media_prefix):
            # a media channel nobody claimed (its call ended before it entered Stasis, or a previous run's
            # leftover): not a caller; a WebSocket one is not named apart from callers, its id is ours
            return None
        if event.args and event.args[0] == TRANSFER_MARKER:
            return None  # an agent leg; its call bound it before originating
        assert self.ari is not None
        call = AriCall(self, event, SharedLink(self.ari, self.config.app, self.dispatcher, channel.id))
        self.calls[channel.id] = call
        return call.handle

    async def _unrouted(self, event: Event) -> None:
        """Outbound calls from ``ivr originate`` that never answered: report busy / no answer / failed."""
        if not isinstance(event, ChannelDestroyed) or not event.channel.id.startswith(ORIGINATE_PREFIX):
            return
        cause = event.cause
        outcome = {17: "busy", 18: "no_answer", 19: "no_answer", 21: "rejected"}.get(cause or 0, "failed")
        life = CallLife(
            event.channel.id, metrics=self.metrics, sink=self.on_report, recent=self.reports, counted=False
        )
        life.fail(outcome, f"originate to {event.channel.name or '?'}: cause {cause} ({event.cause_txt})")
        life.report.direction = "outbound"
        await life.end_without_body()

    async def _on_connected(self, reconnected: bool) -> None:
        if reconnected:
            await self.reconnected()

    async def reconnected(self) -> None:
        """The events socket came back (here, or in a worker's supervisor): reconcile the calls."""
        if self.metrics is not None:
            self.metrics.ari_reconnected()
        if self.ari is None:
            return
        # Events were lost while the socket was down: calls whose channels vanished never heard of it.
        try:
            live = [c.id for c in await self.ari.list_channels()]
        except AriError as exc:
            log.warning("after reconnect: could not list channels: %s", exc)
            return
        for channel_id in self.dispatcher.stale(live):
            call = self.calls.get(channel_id)
            if call is not None:
                log.info("call %s: channel gone during the ARI outage, cleaning up", channel_id)
                call.caller_gone("channel vanished during ARI outage")
