"""Constant-cost latency statistics for the per-frame path.

A histogram of 0.1 ms bins up to 250 ms records one value in O(1) without allocating, so every frame
of every call can be measured; percentiles are computed only when someone asks. Its bins grow only as
far as the largest value seen: a call whose frames are a few ms late holds a few dozen bins (hundreds
of bytes), not the whole 250 ms range (20 KiB per call).
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
        self._bins: list[int] = []
        """Count per bin, as long as the highest bin used (the last possible one, ``_BINS``, overflows)."""
        self.count = 0
        self.total = 0.0
        self.max = 0.0

    def record(self, seconds: float) -> None:
        if seconds < 0.0:
            seconds = 0.0
        i = int(seconds / _BIN)
        if i > _BINS:
            i = _BINS
        bins = self._bins
        if i >= len(bins):
            bins.extend([0] * (i + 1 - len(bins)))
        bins[i] += 1
        self.count += 1
        self.total += seconds
        if seconds > self.max:
            self.max = seconds

    @classmethod
    def from_bins(cls, bins: list[int], count: int, total: float, maximum: float) -> LatencyHistogram:
        """A histogram measured elsewhere in the same 0.1 ms bins (the native pacer counts in C)."""
        hist = cls()
        hist._bins = list(bins[: _BINS + 1])
        hist.count, hist.total, hist.max = int(count), float(total), float(maximum)
        return hist

    def merge(self, other: LatencyHistogram) -> None:
        bins = self._bins
        if len(other._bins) > len(bins):
            bins.extend([0] * (len(other._bins) - len(bins)))
        for i, n in enumerate(other._bins):
            if n:
                bins[i] += n
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
