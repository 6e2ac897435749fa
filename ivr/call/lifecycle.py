"""One place that owns a call's life, for ARI and dialplan-only calls alike.

Whatever fails and whenever (setup, a media peer that closes before the first prompt, a provider, a bug,
a cancellation at shutdown), a call ends with exactly one :class:`CallReport` handed to the sink, one
"ended" log line and the ``ivr_active_calls`` gauge back where it was. The ARI and dialplan apps only say
*what* a call does (its body) and what to clean up (its teardown); :class:`CallLife` says that it ends,
once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, MutableSequence

from ivr.call.observe import observe_call
from ivr.call.report import CallReport
from ivr.ops.metrics import Metrics
from ivr.transport import MediaTransport

log = logging.getLogger("ivr.call")

ReportSink = Callable[[CallReport], Awaitable[None] | None]
"""Where each finished call's report goes (``ivr run`` writes the call record there)."""


class CallLife:
    """The life of one call: started once, ended once, reported once.

    ``counted=False`` is for calls that never became live (an originated call nobody answered): they are
    reported and counted by outcome but never move the active-calls gauge.
    """

    def __init__(
        self,
        call_id: str,
        *,
        metrics: Metrics | None = None,
        sink: ReportSink | None = None,
        recent: MutableSequence[CallReport] | None = None,
        counted: bool = True,
        on_start: Callable[[str], None] | None = None,
    ) -> None:
        self.report = CallReport(call_id=call_id, flow="")
        self.on_start = on_start
        """Told the call id when a counted call starts (a worker tells its supervisor, which records the
        call itself if this process dies before the call's record is written)."""
        self.metrics = metrics
        self.sink = sink
        self.recent = recent
        self.counted = counted
        self.media: MediaTransport | None = None
        """The call's media once it has one, whatever its transport (what it counted goes into the
        metrics: dropped frames, and frame lateness where the app paces)."""
        self.done = asyncio.Event()
        self.finishing: asyncio.Task[None] | None = None
        """The teardown and report, once begun (shielded: a second cancel of the call's task leaves it
        running, and whoever tidies up after the call waits for this, not for that task)."""
        self._started = False
        self._ended = False

    @property
    def call_id(self) -> str:
        return self.report.call_id

    @property
    def ended(self) -> bool:
        return self._ended

    def fail(self, outcome: str, reason: str) -> None:
        """Set the outcome unless one is set already (the first explanation wins)."""
        if not self.report.outcome:
            self.report.outcome, self.report.reason = outcome, reason

    async def run(
        self,
        body: Callable[[], Awaitable[None]],
        *,
        teardown: Callable[[], Awaitable[None]] | None = None,
        cancelled_outcome: Callable[[], str] | None = None,
    ) -> CallReport:
        """Run ``body`` to its end or its failure, then ``teardown``, then report. Never raises for the
        call's own failures; a cancellation is recorded (``cancelled_outcome()``, default ``aborted``)."""
        if self.counted and self.metrics is not None:
            self.metrics.call_started()
            self._started = True
        if self.counted and self.on_start is not None:
            self.on_start(self.call_id)
        try:
            await body()
        except asyncio.CancelledError:
            self.fail(cancelled_outcome() if cancelled_outcome else "aborted", "call task cancelled")
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # the call is ending on purpose: teardown may still await with timeouts
        except Exception as exc:
            self.report.outcome, self.report.reason = "error", f"internal error: {exc!r}"
            self.report.errors.append(self.report.reason)
            log.error("call %s: internal error: %r", self.call_id, exc)
            log.debug("call %s: internal error", self.call_id, exc_info=True)
        finally:
            self.finishing = asyncio.ensure_future(self._finish(teardown))
            await asyncio.shield(self.finishing)
        return self.report

    async def end_without_body(self) -> CallReport:
        """Report a call that never ran (refused, or not answered): same single record and log line."""
        return await self.run(_nothing)

    async def _finish(self, teardown: Callable[[], Awaitable[None]] | None) -> None:
        if self._ended:
            return
        self._ended = True
        report = self.report
        try:
            if teardown is not None:
                try:
                    await teardown()
                except Exception as exc:
                    report.errors.append(f"teardown: {exc!r}")
                    log.error("call %s: teardown failed: %r", self.call_id, exc)
                    log.debug("call %s: teardown failed", self.call_id, exc_info=True)
            if not report.ended_at:
                report.ended_at = time.time()
            if self.metrics is not None:
                observe_call(self.metrics, report, self.media, started=self._started)
            level = logging.WARNING if report.outcome == "error" else logging.INFO
            log.log(level, "call %s: ended (%s) %s", self.call_id, report.outcome, report.reason)
            if self.recent is not None:
                self.recent.append(report)
        finally:
            self.done.set()
        if self.sink is not None:
            try:
                result = self.sink(report)
                if asyncio.iscoroutine(result):
                    await result
            except Exception as exc:
                log.error("call %s: call record not written: %r", self.call_id, exc)


async def _nothing() -> None:
    return None
