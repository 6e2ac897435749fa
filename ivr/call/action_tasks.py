"""The engine's actions that run as a task of their own: ``record``, ``classify``, webhooks, transfers.

Each is spawned by the runtime's action dispatch, runs while the call goes on (the hold line keeps a
caller who waits on a webhook or the LLM matcher out of dead air) and posts its outcome to the call's
inbox as the engine's next event; a failure is recorded and posted as the step's error event.

A mixin of :class:`~ivr.call.runtime.CallRuntime`: the attributes below are the runtime's, and what the
runtime provides is declared for the type checker only (no stub shadows a method at run time).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from ivr.call.recording import Recorder
from ivr.flow import actions as act
from ivr.flow import events as ev
from ivr.flow.builtins import MASK
from ivr.flow.webhook import perform_request

if TYPE_CHECKING:
    from pathlib import Path

    import aiohttp

    from ivr.call.ports import CallControl, Classifier, WebhookHandler
    from ivr.call.report import CallReport
    from ivr.call.waiting import HoldLine
    from ivr.flow.engine import FlowEngine
    from ivr.transport import MediaTransport


class ActionTasks:
    """Records, classifies, calls webhooks and transfers (a mixin of :class:`~ivr.call.runtime.CallRuntime`)."""

    engine: FlowEngine
    media: MediaTransport
    control: CallControl
    hold: HoldLine
    report: CallReport
    call_id: str
    recordings_dir: Path | None
    http: aiohttp.ClientSession | None
    classifier: Classifier | None
    webhook: WebhookHandler | None
    _recorder: Recorder | None
    _reply_since: float | None

    if TYPE_CHECKING:  # provided by the runtime

        def _post(self, event: ev.Event) -> None: ...
        def _trace(self, kind: str, text: str = "", step: str | None = None) -> None: ...
        def _record_error(self, message: str) -> None: ...
        def _route_frames(self) -> None: ...

    async def _record(self, action: act.Record) -> None:
        recorder = Recorder(
            action,
            media=self.media,
            directory=self.recordings_dir,
            call_id=self.call_id,
            index=len(self.report.recordings) + 1,
            on_start=lambda: self._trace("record", action.step, action.step),
        )
        self._recorder = recorder
        self._route_frames()  # the recorder takes the caller's frames now
        try:
            result = await recorder.run()
        finally:
            self._route_frames()
        if recorder.info is not None:
            info = recorder.info
            self.report.recordings.append(
                {
                    "step": info.step,
                    "path": info.path,
                    "duration_s": info.duration_s,
                    "ended_by": info.ended_by,
                }
            )
        if isinstance(result, ev.RecordingFailed):
            self._record_error(f"recording at step {action.step}: {result.reason}")
        self._post(result)

    async def _classify(self, action: act.Classify) -> None:
        if self.classifier is None:
            self._post(ev.ProviderError("llm", "no llm matcher configured"))
            return
        try:
            self._post(await self.classifier(action))
        except Exception as exc:
            self._record_error(f"llm matcher failed: {exc}")
            self._post(ev.ProviderError("llm", str(exc)))

    async def _webhook(self, action: act.HttpRequest) -> None:
        if self.webhook is not None:
            self._post(await self.webhook(action))
            return
        if self.http is None:
            self._post(ev.WebhookFailed("no HTTP client"))
            return
        self._post(await perform_request(self.http, action))

    async def _transfer(self, action: act.Transfer) -> None:
        # Collected values travel with the call as IVR_<NAME> channel variables; sensitive ones never do.
        variables = {
            f"IVR_{k.upper()}": str(v)
            for k, v in self.engine.safe_variables().items()
            if isinstance(v, str | int | float | bool) and v != MASK
        }
        variables.update(action.variables)
        try:
            result = await self.control.transfer(action, variables)
        except Exception as exc:
            self._record_error(f"transfer failed: {exc}")
            result = ev.TransferFailed("failed")
        self._post(result)

    async def _waited(self, work: Coroutine[Any, Any, None], filler: str | None = None) -> None:
        """Run ``work`` while the hold line keeps the caller out of dead air (``filler``: a webhook step's
        own, "" for none: hold tones only; default the flow's, in the call's language)."""
        text = self.engine.filler_text() if filler is None else filler
        since = self._reply_since or asyncio.get_running_loop().time()
        with self.hold.waiting(since, text or None):
            await work
