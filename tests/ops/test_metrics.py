"""Metrics: counters move, lateness folds in per call, the exposition names everything."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from ivr.audiosocket.stats import LatencyHistogram
from ivr.ops.metrics import LATENESS_BUCKETS, Metrics


def value(m: Metrics, name: str, **labels: str) -> float:
    got = m.registry.get_sample_value(name, labels)
    assert got is not None, (name, labels)
    return got


def test_call_lifecycle_and_steps() -> None:
    m = Metrics()
    m.call_started()
    m.call_started()
    assert value(m, "ivr_active_calls") == 2
    m.step("bank")
    m.step("bank")
    m.step("support")
    m.call_ended("completed", duration_s=42.0)
    m.call_ended("", duration_s=3.0)
    m.call_ended("no_answer", started=False)
    assert value(m, "ivr_active_calls") == 0
    assert value(m, "ivr_calls_total", outcome="completed") == 1
    assert value(m, "ivr_calls_total", outcome="unknown") == 1
    assert value(m, "ivr_calls_total", outcome="no_answer") == 1
    assert value(m, "ivr_step_transitions_total", flow="bank") == 2
    assert value(m, "ivr_step_transitions_total", flow="support") == 1
    assert value(m, "ivr_call_duration_seconds_count") == 2
    assert value(m, "ivr_call_duration_seconds_bucket", le="5.0") == 1


def test_providers_media_and_ari() -> None:
    m = Metrics()
    m.observe_stt(0.42)
    m.observe_tts_first_audio(0.18)
    m.observe_tts_first_audio(7.0)
    m.provider_error("openai", "timeout")
    m.provider_error("openai", "timeout")
    m.provider_retry("openai", "http_5xx")
    m.frames_dropped("inbound", 5)
    m.frames_dropped("outbound", 0)
    m.preroll_discarded(7)
    m.preroll_discarded(0)
    m.ari_reconnected()
    assert value(m, "ivr_stt_latency_seconds_bucket", le="0.5") == 1
    assert value(m, "ivr_stt_latency_seconds_bucket", le="0.3") == 0
    assert value(m, "ivr_tts_first_audio_seconds_count") == 2
    assert value(m, "ivr_tts_first_audio_seconds_bucket", le="5.0") == 1
    assert value(m, "ivr_provider_errors_total", provider="openai", kind="timeout") == 2
    assert value(m, "ivr_provider_retries_total", provider="openai", kind="http_5xx") == 1
    assert value(m, "ivr_frames_dropped_total", direction="inbound") == 5
    assert value(m, "ivr_frames_dropped_total", direction="outbound") == 0
    assert value(m, "ivr_preroll_frames_discarded_total") == 7
    assert value(m, "ivr_ari_reconnects_total") == 1
    with pytest.raises(ValueError, match="direction"):
        m.frames_dropped("sideways", 1)


def test_lateness_histogram_is_folded_in_at_call_end() -> None:
    m = Metrics()
    call1 = LatencyHistogram()
    for seconds in (0.0, -0.001, 0.0002, 0.0009, 0.0025, 0.004, 0.012, 0.019, 0.3):
        call1.record(seconds)
    call2 = LatencyHistogram()
    for _ in range(1000):
        call2.record(0.0003)
    m.observe_lateness_summary(call1)
    m.observe_lateness_summary(call2)
    m.observe_lateness_summary(LatencyHistogram())  # a call that never played: no change

    def bucket(le: str) -> float:
        return value(m, "ivr_frame_lateness_seconds_bucket", le=le)

    assert bucket("0.0005") == 3 + 1000  # 0, early (counts as 0), 0.2 ms, and call 2
    assert bucket("0.001") == 1004
    assert bucket("0.003") == 1005
    assert bucket("0.005") == 1006
    assert bucket("0.015") == 1007
    assert bucket("0.02") == 1008
    assert bucket("0.1") == 1008
    assert bucket("+Inf") == 1009  # beyond the media histogram's 250 ms range
    assert value(m, "ivr_frame_lateness_seconds_count") == 1009
    assert value(m, "ivr_frame_lateness_seconds_sum") == pytest.approx(call1.total + call2.total)
    cumulative = [bucket(repr(b)) for b in LATENESS_BUCKETS]
    assert cumulative == sorted(cumulative)


def test_exposition_names_every_metric_and_registries_are_private() -> None:
    m = Metrics()
    other = Metrics()  # a second instance in the same process: no "duplicated timeseries"
    m.call_started()
    other.provider_error("offline", "bad_audio")
    body, content_type = m.exposition()
    text = body.decode()
    assert content_type.startswith("text/plain")
    for name in (
        "ivr_active_calls",
        "ivr_calls_total",
        "ivr_call_duration_seconds",
        "ivr_step_transitions_total",
        "ivr_stt_latency_seconds_bucket",
        "ivr_tts_first_audio_seconds_bucket",
        "ivr_provider_errors_total",
        "ivr_provider_retries_total",
        "ivr_frames_dropped_total",
        "ivr_ari_reconnects_total",
        "ivr_frame_lateness_seconds_bucket",
        "# TYPE ivr_frame_lateness_seconds histogram",
    ):
        assert name in text, name
    assert "ivr_active_calls 1.0" in text
    assert 'provider="offline"' not in text  # the other instance's sample stays there
    assert REGISTRY.get_sample_value("ivr_active_calls") is None  # the global registry is untouched

    om_body, om_type = m.exposition("application/openmetrics-text; version=1.0.0")
    assert om_type.startswith("application/openmetrics-text")
    assert om_body.decode().rstrip().endswith("# EOF")


def test_a_named_instance_labels_every_sample_and_merging_keeps_the_label() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from ivr.workers.metrics import MergedExposition

    a = Metrics(instance="ivr-a")
    a.call_started()
    a.call_ended("completed", 12.0)
    a.step("bank")
    samples = [s for f in text_string_to_metric_families(a.exposition()[0].decode()) for s in f.samples]
    assert samples
    assert all(s.labels.get("ivr_instance") == "ivr-a" for s in samples)
    assert 'ivr_calls_total{ivr_instance="ivr-a",outcome="completed"} 1.0' in a.exposition()[0].decode()
    om = a.exposition("application/openmetrics-text; version=1.0.0")[0].decode()
    assert 'ivr_instance="ivr-a"' in om
    assert om.rstrip().endswith("# EOF")
    # the supervisor sums its workers' pages: same instance label, so one series per metric
    worker = Metrics(instance="ivr-a")
    worker.call_started()
    merged = MergedExposition(a)
    merged.update([worker.exposition()[0].decode()])
    text = merged.exposition()[0].decode()
    assert 'ivr_active_calls{ivr_instance="ivr-a"} 1.0' in text
    assert "\nivr_active_calls " not in text
    assert "ivr_instance" not in Metrics().exposition()[0].decode(), "no name configured: no label"
