"""Dialplan-only mode: Asterisk dials us with ``AudioSocket()`` or ``Dial(AudioSocket/...)``, no ARI.

Each connection runs the configured flow. There is no channel to control, so DTMF comes from the socket
(``0x03``), hanging up is closing the socket, caller id is unknown (AudioSocket carries only the UUID) and
transfers fail (their step's failure branch is taken); ``ivr validate --mode dialplan`` warns about them.
The player's silence frames keep the ``AudioSocket()`` app's 2 s inactivity timer fed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

import aiohttp

from ivr.audiosocket.session import AudioSocketSession
from ivr.call.flows import FlowCatalog
from ivr.call.languages import call_speech
from ivr.call.observe import observe_call
from ivr.call.ports import SpeechFactory
from ivr.call.runtime import RECENT_REPORTS, CallReport, CallRuntime, Classifier, WebhookHandler
from ivr.flow import actions as act
from ivr.flow import events as ev
from ivr.ops.metrics import Metrics

log = logging.getLogger(__name__)


class DialplanApp:
    def __init__(
        self,
        *,
        flows: FlowCatalog,
        speech: SpeechFactory,
        flow: str | None = None,
        http: aiohttp.ClientSession | None = None,
        classifier: Classifier | None = None,
        audio_dir: Path | None = None,
        max_calls: int = 100,
        max_call_seconds: float = 3600.0,
        on_report: Callable[[CallReport], Awaitable[None]] | None = None,
        metrics: Metrics | None = None,
        webhook: WebhookHandler | None = None,
        recordings_dir: Path | None = None,
    ) -> None:
        self.webhook = webhook
        self.recordings_dir = recordings_dir
        self.on_report = on_report
        self.metrics = metrics
        self.flows = flows
        self.speech = speech
        self.flow = flow
        self.http = http
        self.classifier = classifier
        self.audio_dir = audio_dir
        self.max_calls = max_calls
        self.max_call_seconds = max_call_seconds
        self.runtimes: set[CallRuntime] = set()
        self.reports: deque[CallReport] = deque(maxlen=RECENT_REPORTS)
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
        """The AudioSocket server's ``on_session`` handler: one call, start to end."""
        call_id = str(session.uuid)
        if self.active >= self.max_calls:
            log.warning("call %s: %d calls is the limit, hanging up", call_id, self.max_calls)
            self.reports.append(CallReport(call_id=call_id, flow="", outcome="busy", reason="over max_calls"))
            return
        runtime: CallRuntime | None = None
        try:
            engine = self.flows.engine(self.flow)
            if self.metrics is not None:
                self.metrics.call_started()
            runtime = CallRuntime(
                engine=engine,
                media=session,
                control=_SocketControl(session),
                speech=call_speech(self.speech, engine.settings, session.rate),
                call_id=call_id,
                dtmf_from_media=True,
                http=self.http,
                classifier=self.classifier,
                audio_dir=self.audio_dir,
                max_call_seconds=self.max_call_seconds,
                webhook=self.webhook,
                recordings_dir=self.recordings_dir,
            )
            self.runtimes.add(runtime)
            report = await runtime.run(ev.CallStarted(call_id=call_id, direction="inbound"))
            self.reports.append(report)
            log.info("call %s: ended (%s) %s", call_id, report.outcome, report.reason)
            if self.metrics is not None:
                observe_call(self.metrics, report, session, started=True)
            if self.on_report is not None:
                await self.on_report(report)
        finally:
            if runtime is not None:
                self.runtimes.discard(runtime)


class _SocketControl:
    def __init__(self, session: AudioSocketSession) -> None:
        self.session = session

    async def hangup(self, reason: str) -> None:
        self.session.hangup(reason)

    async def transfer(
        self, action: act.Transfer, variables: Mapping[str, str]
    ) -> ev.TransferCompleted | ev.TransferFailed:
        log.warning(
            "call %s: step %s: transfers need ARI mode (dialplan-only calls cannot be redirected)",
            self.session.uuid,
            action.step,
        )
        return ev.TransferFailed("failed")
