"""Workers' metrics add up into one exposition (counters, gauges, histograms by label)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ivr.ops.metrics import Metrics
from ivr.workers.metrics import MergedCollector, merge


def exposition(calls: int, outcome: str, lag: float) -> str:
    m = Metrics()
    for _ in range(calls):
        m.call_started()
    m.call_ended(outcome, 12.0)
    m.loop_lag.observe(lag)
    return m.exposition()[0].decode()


def values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


def test_samples_are_summed_per_name_and_labels() -> None:
    a, b = exposition(3, "completed", 0.0004), exposition(2, "error", 0.03)
    merged = merge([a, b])
    registry = CollectorRegistry()
    collector = MergedCollector()
    registry.register(collector)
    collector.update([a, b])
    got = values(generate_latest(registry).decode())
    assert got[("ivr_active_calls", ())] == (3 - 1) + (2 - 1)
    assert got[("ivr_calls_total", (("outcome", "completed"),))] == 1
    assert got[("ivr_calls_total", (("outcome", "error"),))] == 1
    assert got[("ivr_loop_lag_seconds_count", ())] == 2
    assert got[("ivr_loop_lag_seconds_bucket", (("le", "0.0005"),))] == 1
    assert got[("ivr_loop_lag_seconds_bucket", (("le", "0.05"),))] == 2
    assert {m.type for m in merged if m.name == "ivr_loop_lag_seconds"} == {"histogram"}


def test_nothing_to_merge_is_empty() -> None:
    assert merge([]) == []
