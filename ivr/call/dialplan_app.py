"""Dialplan-only mode: Asterisk dials us, no ARI: ``AudioSocket()``, ``Dial(AudioSocket/...)`` or
``Dial(WebSocket/<websocket_client.conf entry>/c(slin16))``.

Each connection runs the configured flow, whatever its transport (the call runs on the neutral
:class:`ivr.transport.MediaTransport`). There is no channel to control, so DTMF comes from the media
(AudioSocket ``0x03``, WebSocket ``DTMF_END``), hanging up is ending the media, caller id is unknown (the
connection carries only its UUID or channel id) and transfers fail (their step's failure branch is
taken); ``ivr validate --mode dialplan`` warns about them. AudioSocket: the player's silence frames keep
the ``AudioSocket()`` app's 2 s inactivity timer fed, and the rate comes from the first audio frame.
WebSocket media: MEDIA_START says the format, and Asterisk paces.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping

from ivr.audiosocket.session import AudioSocketSession
from ivr.call.languages import call_speech
from ivr.call.lifecycle import CallLife
from ivr.call.report import CallReport
from ivr.call.runtime import CallRuntime
from ivr.call.services import CallServices
from ivr.flow import actions as act
from ivr.flow import events as ev
from ivr.transport import MediaTransport
from ivr.websocket.session import WebSocketMediaSession

log = logging.getLogger(__name__)

RATE_TIMEOUT = 1.0
"""Seconds to wait for the first audio frame (which tells the rate) before assuming the session's rate."""


class DialplanApp:
    def __init__(
        self,
        *,
        services: CallServices,
        flow: str | None = None,
        max_calls: int = 100,
        rate_timeout: float = RATE_TIMEOUT,
    ) -> None:
        self.services = services
        self.rate_timeout = rate_timeout
        self.on_report = services.on_report
        self.metrics = services.metrics
        self.flows = services.flows
        self.speech = services.speech
        self.flow = flow
        self.max_calls = max_calls
        self.runtimes: set[CallRuntime] = set()
        self._live = 0
        """Calls between their session opening and their record (waiting for audio included)."""
        self.reports: deque[CallReport] = deque(maxlen=services.recent_reports)
        """The most recent finished calls (records keep them all): bounded, a long-running app never grows."""

    @property
    def active(self) -> int:
        return len(self.runtimes)

    async def drain(self, grace: float, goodbye: str | None = None) -> None:
        """Graceful shutdown: let live calls finish for ``grace`` seconds, then say goodbye and hang up."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                while self.runtimes:  # noqa: ASYNC110 - calls end on their own schedule
                    await asyncio.sleep(0.1)
        for runtime in list(self.runtimes):
            runtime.abort("shutting down", goodbye)
        async with asyncio.timeout(15):
            while self.runtimes:  # noqa: ASYNC110
                await asyncio.sleep(0.05)

    async def handle(self, session: AudioSocketSession) -> None:
        """The AudioSocket server's ``on_session`` handler: one call, start to end, one record."""
        await self.serve(session, str(session.uuid), rate=lambda: self._audiosocket_rate(session))

    async def handle_websocket(self, session: WebSocketMediaSession) -> None:
        """The WebSocket media server's ``on_session`` handler (``Dial(WebSocket/<entry>/...)``)."""
        await self.serve(session, session.channel_id or session.start.connection_id)

    async def serve(
        self,
        media: MediaTransport,
        call_id: str,
        *,
        rate: Callable[[], Awaitable[int | None]] | None = None,
    ) -> None:
        """One call on ``media``, start to end, one record. ``rate`` finds the call's rate when the
        transport does not know it yet (None: it does); it returns None when the media closed."""
        life = CallLife(
            call_id,
            metrics=self.metrics,
            sink=self.on_report,
            recent=self.reports,
            on_start=self.services.on_start,
        )
        life.media = media
        life.report.direction = "inbound"
        self._live += 1
        try:
            await life.run(lambda: self._serve(media, life, rate))
        finally:
            self._live -= 1

    async def _audiosocket_rate(self, session: AudioSocketSession) -> int | None:
        # Nothing rate-dependent (prompts, endpointer, speech engines) before the first audio frame says
        # what Asterisk sends: AudioSocket() is always 8 kHz, Dial(AudioSocket/...) the channel's format.
        rate = await session.wait_rate(self.rate_timeout)
        if session.closed:
            return None
        if rate is None:
            rate = session.settle_rate()
            log.info(
                "call %s: no audio from Asterisk within %g s; assuming %d Hz",
                session.uuid,
                self.rate_timeout,
                rate,
            )
        return rate

    async def _serve(
        self,
        media: MediaTransport,
        life: CallLife,
        find_rate: Callable[[], Awaitable[int | None]] | None,
    ) -> None:
        call_id = life.call_id
        if self._live > self.max_calls:
            log.warning("call %s: %d calls is the limit, hanging up", call_id, self.max_calls)
            life.fail("busy", f"over the limit of {self.max_calls} calls")
            media.hangup("over max_calls")
            return
        rate = media.rate if find_rate is None else await find_rate()
        if rate is None or media.closed:
            why = getattr(media, "close_reason", None) or "closed"
            life.fail("caller_hangup", f"media closed before the call started: {why}")
            return
        try:
            engine = self.flows.engine(self.flow)
        except LookupError as exc:
            life.fail("error", str(exc))
            log.warning("call %s: %s", call_id, exc)
            return
        runtime = CallRuntime(
            engine=engine,
            media=media,
            control=_MediaControl(media, call_id),
            speech=call_speech(self.speech, engine.settings, rate),
            call_id=call_id,
            dtmf_from_media=True,
            services=self.services,
            report=life.report,
        )
        self.runtimes.add(runtime)
        try:
            await runtime.run(ev.CallStarted(call_id=call_id, direction="inbound"))
        finally:
            self.runtimes.discard(runtime)


class _MediaControl:
    """Telephony without ARI: hanging up is ending the media; there is nothing to redirect."""

    def __init__(self, media: MediaTransport, call_id: str) -> None:
        self.media = media
        self.call_id = call_id

    async def hangup(self, reason: str) -> None:
        self.media.hangup(reason)

    async def transfer(
        self, action: act.Transfer, variables: Mapping[str, str]
    ) -> ev.TransferCompleted | ev.TransferFailed:
        log.warning(
            "call %s: step %s: transfers need ARI mode (dialplan-only calls cannot be redirected)",
            self.call_id,
            action.step,
        )
        return ev.TransferFailed("failed")
