"""Folding one finished call into the process metrics (once per call, never per frame).

The call's media is whatever transport carried it: what it counted comes through the neutral
:class:`ivr.transport.MediaStats`, so frame lateness is folded in only where the app paced the audio
(AudioSocket); with WebSocket media Asterisk paces and the lateness is its own.
"""

from __future__ import annotations

from ivr.audiosocket.stats import LatencyHistogram
from ivr.call.report import CallReport
from ivr.ops.metrics import Metrics
from ivr.transport import MediaTransport


def observe_call(
    metrics: Metrics, report: CallReport, media: MediaTransport | None, *, started: bool
) -> None:
    duration = max(0.0, report.ended_at - report.started_at) if report.ended_at else None
    metrics.call_ended(report.outcome or "unknown", duration, started=started)
    for _ in report.path:
        metrics.step(report.flow or "?")
    for ms in report.stt_ms:
        metrics.observe_stt(ms / 1000)
    for ms in report.tts_first_audio_ms:
        metrics.observe_tts_first_audio(ms / 1000)
    for provider in report.provider_errors:
        metrics.provider_error(provider, "flow_error")
    if media is None:
        return
    stats = media.media_stats()
    if isinstance(stats.lateness, LatencyHistogram):
        metrics.observe_lateness_summary(stats.lateness)
    metrics.frames_dropped("inbound", stats.inbound_dropped)
    metrics.frames_dropped("outbound", stats.outbound_dropped)
    metrics.preroll_discarded(stats.preroll_discarded)
