"""One ``/metrics`` for all workers: their expositions merged into the supervisor's registry.

Each worker keeps its own :class:`~ivr.ops.metrics.Metrics` (no shared memory between processes); the
supervisor asks every worker for its exposition when it is scraped and adds them up sample by sample.
Every metric ``ivr`` exports is a sum over calls (counters, histograms, the active-call gauge), so the sum
over workers is the instance's figure.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from ivr.ops.metrics import Metrics

LabelKey = tuple[tuple[str, str], ...]


def merge(expositions: Sequence[str]) -> list[Metric]:
    """Sum the samples of several Prometheus text expositions, keeping each family's type and help."""
    families: dict[str, Metric] = {}
    totals: dict[str, dict[tuple[str, LabelKey], float]] = {}
    for text in expositions:
        for family in text_string_to_metric_families(text):
            merged = families.get(family.name)
            if merged is None:
                merged = families[family.name] = Metric(family.name, family.documentation, family.type)
                totals[family.name] = {}
            sums = totals[family.name]
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                sums[key] = sums.get(key, 0.0) + sample.value
    out: list[Metric] = []
    for name, family in families.items():
        for (sample_name, labels), value in totals[name].items():
            family.add_sample(sample_name, dict(labels), value)
        out.append(family)
    return out


class MergedExposition:
    """``/metrics`` of a supervisor: its own metrics and its workers', summed into one exposition."""

    def __init__(self, own: Metrics) -> None:
        self.own = own
        self.registry = CollectorRegistry(auto_describe=True)
        self.collector = MergedCollector()
        self.registry.register(self.collector)

    def update(self, worker_expositions: Sequence[str]) -> None:
        self.collector.update([self.own.exposition()[0].decode(), *worker_expositions])

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type


class MergedCollector(Collector):
    """Yields the last merged worker metrics; :meth:`update` replaces them (once per scrape)."""

    def __init__(self) -> None:
        self._metrics: list[Metric] = []

    def update(self, expositions: Sequence[str]) -> None:
        self._metrics = merge(expositions)

    def collect(self) -> Iterable[Metric]:
        return list(self._metrics)
