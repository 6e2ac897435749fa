"""What every call of a process uses and the process owns, in one bundle.

The ARI app, the dialplan-only app and each call's runtime take this instead of a dozen overlapping
arguments; the process that assembles them (:mod:`ivr.workers.process`) builds it once.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from ivr.call.flows import FlowCatalog
from ivr.call.lifecycle import ReportSink
from ivr.call.ports import Classifier, SpeechFactory, WebhookHandler
from ivr.call.report import RECENT_REPORTS, Tracer
from ivr.call.resume import CheckpointStore
from ivr.call.turn_models import TurnModels
from ivr.ops.metrics import Metrics


@dataclass(frozen=True, slots=True)
class CallServices:
    flows: FlowCatalog
    speech: SpeechFactory
    """Builds a call's engines from its flow's settings and rate."""
    http: aiohttp.ClientSession | None = None
    """For webhooks when no ``webhook`` handler is given (tests, the simulator)."""
    webhook: WebhookHandler | None = None
    classifier: Classifier | None = None
    """The LLM intent matcher, when an API key is configured."""
    audio_dir: Path | None = None
    """Where ``play:`` files live (``<flows>/audio``)."""
    max_call_seconds: float = 3600.0
    on_report: ReportSink | None = None
    """Each finished call's report (the call record is written there)."""
    metrics: Metrics | None = None
    tracer: Tracer | None = None
    on_start: Callable[[str], None] | None = None
    """Told each call's id as the call becomes live (a worker tells its supervisor)."""
    recordings_dir: Path | None = None
    """Where ``record`` steps store their WAV files (None: record steps take their error path)."""
    clock: Callable[[], float] | None = None
    """The wall clock flows see as ``now`` (None: ``time.time``; simulations pin it)."""
    engine_executor: Executor | None = None
    """Where flow engines decide (one thread per process): template rendering stays off the loop that
    paces audio. None: on the loop (tests, the simulator)."""
    checkpoints: CheckpointStore | None = None
    """Where ARI calls save their flow state as it changes and look it up when they come back after the
    instance serving them died (the records store; None: calls are not resumable)."""
    turns: TurnModels | None = None
    """The process's turn-taking models (neural VAD, end-of-turn model); None: energy VAD, silence only."""
    recent_reports: int = RECENT_REPORTS
    """Finished calls' reports the app keeps in memory (``app.reports``, for whoever embeds it: tests, the
    simulator); a serving process keeps few, its records hold every call."""
