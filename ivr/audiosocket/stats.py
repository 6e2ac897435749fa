"""Constant-cost latency statistics for the per-frame path.

A fixed histogram (0.1 ms bins up to 250 ms) records one value in O(1) without allocating, so every
frame of every call can be measured; percentiles are computed only when someone asks.
"""

from __future__ import annotations

from dataclasses import dataclass

_BIN = 0.0001  # seconds per bin
_BINS = 2500  # 250 ms; later values land in the last bin and still count towards max


@dataclass(frozen=True, slots=True)
class LatencySummary:
    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float


class LatencyHistogram:
    """Lateness of events against their deadlines; early events count as zero lateness."""

    __slots__ = ("_bins", "count", "max", "total")

    def __init__(self) -> None:
        self._bins = [0] * (_BINS + 1)
        self.count = 0
        self.total = 0.0
        self.max = 0.0

    def record(self, seconds: float) -> None:
        if seconds < 0.0:
            seconds = 0.0
        i = int(seconds / _BIN)
        self._bins[i if i < _BINS else _BINS] += 1
        self.count += 1
        self.total += seconds
        if seconds > self.max:
            self.max = seconds

    def merge(self, other: LatencyHistogram) -> None:
        for i, n in enumerate(other._bins):
            if n:
                self._bins[i] += n
        self.count += other.count
        self.total += other.total
        self.max = max(self.max, other.max)

    def percentile(self, q: float) -> float:
        """Upper edge of the bin holding the q-th percentile (0 < q <= 100), in seconds."""
        if not self.count:
            return 0.0
        rank = max(1, round(self.count * q / 100.0))
        seen = 0
        for i, n in enumerate(self._bins):
            seen += n
            if seen >= rank:
                return min((i + 1) * _BIN, self.max) if i < _BINS else self.max
        return self.max

    def summary(self) -> LatencySummary:
        return LatencySummary(
            count=self.count,
            p50_ms=self.percentile(50) * 1000,
            p99_ms=self.percentile(99) * 1000,
            max_ms=self.max * 1000,
            mean_ms=(self.total / self.count * 1000) if self.count else 0.0,
        )
