"""Frame timing at the receiver: lateness against an ideal 20 ms cadence, drift, gaps; percentiles."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ivr.bench.legs import PERIOD

FloatArray = np.ndarray[Any, np.dtype[np.float64]]


def pcts(values: FloatArray) -> dict[str, float | None]:
    if values.size == 0:
        return {"p50": None, "p99": None, "max": None}
    p50, p99 = np.percentile(values, [50, 99])
    return {"p50": round(float(p50), 3), "p99": round(float(p99), 3), "max": round(float(values.max()), 3)}


def frame_stats(streams: Iterable[FloatArray], k: int = 50) -> dict[str, Any]:
    """Lateness of every received frame against each stream's ideal 20 ms cadence, drift and gaps.

    ``streams`` are each call's arrival times (seconds, monotonic) during the window. A stream's ideal
    cadence is ``anchor + n * 20 ms`` with the anchor at its least-delayed frame, so lateness is never
    negative and a period the server skipped shows as 20 ms of lateness for every later frame. Drift is how
    much later the stream runs at the end of the window than at its start (the least-delayed of the last
    ``k`` frames against the first ``k``). At the receiver a frame never sent and a stream running one
    period late look the same (a 20 ms gap in what the caller hears): ``frames_skipped`` counts the whole
    periods each stream fell behind (its drift, rounded down to periods), summed over the streams.
    """
    lateness: list[FloatArray] = []
    drifts: list[float] = []
    skipped = received = 0
    for t in streams:
        if t.size < 2:
            continue
        received += int(t.size)
        offsets = t - np.arange(t.size) * PERIOD
        lateness.append((offsets - offsets.min()) * 1000.0)
        k_eff = min(k, t.size)
        leg_drift = float(offsets[-k_eff:].min() - offsets[:k_eff].min())
        drifts.append(leg_drift * 1000.0)
        skipped += max(0, int(leg_drift / PERIOD + 0.05))  # a period within 1 ms counts
    all_late = np.concatenate(lateness) if lateness else np.empty(0)
    drift = np.abs(np.array(drifts)) if drifts else np.empty(0)
    return {
        "frames_received": received,
        "frames_skipped": skipped,
        "lateness_ms": pcts(all_late),
        "drift_ms": {
            "median": round(float(np.median(drift)), 3) if drift.size else None,
            "max": round(float(drift.max()), 3) if drift.size else None,
        },
    }
