"""Folding one finished call into the process metrics (once per call, never per frame)."""

from __future__ import annotations

from ivr.audiosocket.session import AudioSocketSession
from ivr.call.report import CallReport
from ivr.ops.metrics import Metrics


def observe_call(
    metrics: Metrics, report: CallReport, session: AudioSocketSession | None, *, started: bool
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
    if session is not None:
        metrics.observe_lateness_summary(session.player.lateness)
        if session.dropped_audio:
            metrics.frames_dropped("inbound", session.dropped_audio)
        if session.player.dropped_frames:
            metrics.frames_dropped("outbound", session.player.dropped_frames)
