"""Prometheus metrics of one ``ivr`` process, on a private registry.

Every method of :class:`Metrics` is called at most a few times per call (call start/end, each step,
each STT/TTS request), never per audio frame: per-frame figures are kept by the media layer in
constant-cost structures and handed over once, at call end (:meth:`Metrics.observe_lateness_summary`
folds a call's :class:`ivr.audiosocket.stats.LatencyHistogram` into the exported histogram in one pass).

Names follow Prometheus conventions: base units (seconds), ``_total`` for counters (added by
prometheus-client), a common ``ivr_`` prefix. Label values come from code and flow names only (bounded
cardinality); caller data never becomes a label. With ``IVR_INSTANCE_ID`` set, every sample also carries
``ivr_instance="<id>"`` (not ``instance``: Prometheus sets that one to the scrape target), so the
instances behind one balancer can be told apart and summed.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from ivr.audiosocket.stats import LatencyHistogram
from ivr.ops.looplag import LOOP_LAG_BUCKETS

SPEECH_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
"""Seconds; STT (end of speech to transcript) and TTS (request to first audio) both live here."""

LATENESS_BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.04,
    0.1,
)
"""Seconds, 0.5 ms to 20 ms in fine steps (a frame period is 20 ms; the target is p99 <= 5 ms).

Each bound is an edge of the media layer's 0.1 ms bins, so folding a call's histogram in loses nothing
beyond that resolution (a value exactly on a bound counts in the next bucket up).
"""

CALL_DURATION_BUCKETS: tuple[float, ...] = (5, 15, 30, 60, 120, 300, 600, 1800, 3600)

DIRECTIONS = ("inbound", "outbound")

_BIN_S = 0.0001  # ivr.audiosocket.stats bin width

INSTANCE_LABEL = "ivr_instance"
"""The label every sample gets when the instance has a configured name."""


class InstanceLabelled(Collector):
    """Every family of ``source`` with ``ivr_instance="<instance>"`` added to each sample (per scrape)."""

    def __init__(self, source: CollectorRegistry, instance: str) -> None:
        self.source = source
        self.instance = instance

    def collect(self) -> Iterable[Metric]:
        for family in self.source.collect():
            out = Metric(family.name, family.documentation, family.type, family.unit)
            for s in family.samples:
                labels = {**s.labels, INSTANCE_LABEL: self.instance}
                out.add_sample(s.name, labels, s.value, s.timestamp, s.exemplar)
            yield out

    def describe(self) -> Iterable[Metric]:
        return []


class _FoldedHistogram(Collector):
    """A histogram fed whole call histograms at a time (prometheus-client has no bulk observe)."""

    def __init__(self, name: str, documentation: str, bounds: Sequence[float]) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = tuple(bounds)
        self._counts = [0] * (len(self.bounds) + 1)  # per bucket, not cumulative; last: +Inf
        self._sum = 0.0
        self._lock = threading.Lock()
        # the first media bin index that no longer fits each bound: bin i holds [i, i + 1) * 0.1 ms
        self._edges = [round(b / _BIN_S) for b in self.bounds]

    def fold(self, histogram: LatencyHistogram) -> None:
        if not histogram.count:
            return
        bins = histogram._bins  # our own media-layer type; read once per call, not per frame
        added = [0] * (len(self.bounds) + 1)
        lo = 0
        for k, hi in enumerate(self._edges):
            added[k] = sum(bins[lo:hi])
            lo = hi
        added[-1] = sum(bins[lo:])
        with self._lock:
            for k, n in enumerate(added):
                self._counts[k] += n
            self._sum += histogram.total

    def observe(self, seconds: float) -> None:
        """One value (tests, or figures that really come one at a time)."""
        k = bisect.bisect_left(self.bounds, seconds)
        with self._lock:
            self._counts[k] += 1
            self._sum += seconds

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            counts = list(self._counts)
            total = self._sum
        buckets: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip((*self.bounds, float("inf")), counts, strict=True):
            running += n
            buckets.append(("+Inf" if bound == float("inf") else _fmt(bound), running))
        family = HistogramMetricFamily(self.name, self.documentation, buckets=buckets, sum_value=total)
        yield family

    def describe(self) -> Iterable[Metric]:
        yield HistogramMetricFamily(self.name, self.documentation)


PacerStats = Callable[[], tuple[LatencyHistogram, int, int, bool]]
"""Reads a native pacing thread: (wake-up lateness, wake-ups, periods skipped, real-time priority)."""


class _PacerCollector(Collector):
    """The native pacing thread's own health, read at scrape time (its counters are cumulative)."""

    def __init__(self, ns: str, read: PacerStats) -> None:
        self._prefix = f"{ns}_" if ns else ""
        self._read = read

    def collect(self) -> Iterable[Metric]:
        lateness, _wakeups, skipped, _realtime = self._read()
        folded = _FoldedHistogram(
            f"{self._prefix}pacer_wakeup_lateness_seconds",
            "How late the native pacing thread woke for its 1 ms slots (what every frame's lateness starts from)",
            LATENESS_BUCKETS,
        )
        folded.fold(lateness)
        yield from folded.collect()
        yield CounterMetricFamily(
            f"{self._prefix}pacer_skipped_periods",
            "20 ms periods the native pacing thread skipped after waking over 3 periods late",
            value=skipped,
        )

    def describe(self) -> Iterable[Metric]:
        return []


def _fmt(bound: float) -> str:
    return repr(float(bound))


class Metrics:
    """The metrics ``ivr run`` exports. One instance per process (or per test), own registry.

    Labels: ``outcome`` (a call's outcome: ``completed``, ``transferred``, ``caller_hangup``, ``error``,
    ...), ``flow`` (root flow name), ``provider`` (``openai``, ``offline``, ``webhook``, ...), ``kind``
    (short error class: ``timeout``, ``http_5xx``, ``connection``, ``bad_audio``, ...), ``direction``
    (``inbound`` / ``outbound`` frames).
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        namespace: str = "ivr",
        instance: str | None = None,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.instance = instance
        """``IVR_INSTANCE_ID``: exported as the ``ivr_instance`` label of every sample (None: no label)."""
        self._exported = self.registry
        if instance:
            self._exported = CollectorRegistry(auto_describe=False)
            self._exported.register(InstanceLabelled(self.registry, instance))
        ns, reg = namespace, self.registry
        self._namespace = ns
        self.active_calls = Gauge("active_calls", "Calls in progress", namespace=ns, registry=reg)
        self._calls_moved = 0  # calls begun plus calls ended
        self._calls_live = 0
        self.calls = Counter("calls", "Finished calls by outcome", ["outcome"], namespace=ns, registry=reg)
        self.call_duration = Histogram(
            "call_duration_seconds",
            "Length of finished calls",
            namespace=ns,
            registry=reg,
            buckets=CALL_DURATION_BUCKETS,
        )
        self.step_transitions = Counter(
            "step_transitions", "Flow steps entered", ["flow"], namespace=ns, registry=reg
        )
        self.stt_latency = Histogram(
            "stt_latency_seconds",
            "Speech-to-text: end of the caller's turn to its transcript (0 when a pause's words check had it)",
            namespace=ns,
            registry=reg,
            buckets=SPEECH_BUCKETS,
        )
        self.tts_first_audio = Histogram(
            "tts_first_audio_seconds",
            "Text-to-speech: request to first audio byte",
            namespace=ns,
            registry=reg,
            buckets=SPEECH_BUCKETS,
        )
        self.provider_errors = Counter(
            "provider_errors",
            "Failed requests to speech/LLM/webhook providers",
            ["provider", "kind"],
            namespace=ns,
            registry=reg,
        )
        self.provider_retries = Counter(
            "provider_retries",
            "Requests to providers retried after a failure",
            ["provider", "kind"],
            namespace=ns,
            registry=reg,
        )
        self.frames_dropped_total = Counter(
            "frames_dropped",
            "Audio frames dropped (inbound: slow consumer; outbound: peer not reading)",
            ["direction"],
            namespace=ns,
            registry=reg,
        )
        self.preroll_discarded_total = Counter(
            "preroll_frames_discarded",
            "Caller frames from before a call listened (set-up), older than the newest second it keeps",
            namespace=ns,
            registry=reg,
        )
        self.ari_reconnects = Counter(
            "ari_reconnects", "ARI WebSocket reconnections", namespace=ns, registry=reg
        )
        self.loop_lag = Histogram(
            "loop_lag_seconds",
            "How late the event loop ran a heartbeat due every 5 ms (anything that holds the loop)",
            namespace=ns,
            registry=reg,
            buckets=LOOP_LAG_BUCKETS,
        )
        self.setups_waiting = Gauge(
            "call_setups_waiting",
            "ARI calls waiting for a set-up slot (a burst over IVR_SETUP_CONCURRENCY at once)",
            namespace=ns,
            registry=reg,
        )
        self.setup_wait = Histogram(
            "call_setup_wait_seconds",
            "ARI calls: time from StasisStart to the start of their set-up (waiting for a slot)",
            namespace=ns,
            registry=reg,
            buckets=SPEECH_BUCKETS,
        )
        self.frame_lateness = _FoldedHistogram(
            f"{ns}_frame_lateness_seconds" if ns else "frame_lateness_seconds",
            "Outbound audio frames: lateness against their 20 ms deadline (folded in at call end)",
            LATENESS_BUCKETS,
        )
        reg.register(self.frame_lateness)
        self._dropped = {d: self.frames_dropped_total.labels(direction=d) for d in DIRECTIONS}
        self._steps: dict[str, Counter] = {}

    # -- calls --------------------------------------------------------------------------------------

    def call_started(self) -> None:
        self.active_calls.inc()
        self._calls_moved += 1
        self._calls_live += 1

    def call_activity(self) -> tuple[int, int]:
        """(calls begun or ended so far, calls in progress): what changes when calls come or go, read
        without the gauge's lock (the process's memory trimmer polls it, see ``AudioSocketServer``)."""
        return self._calls_moved, self._calls_live

    def call_ended(self, outcome: str, duration_s: float | None = None, *, started: bool = True) -> None:
        """A call is over. ``started=False`` for calls that never had :meth:`call_started` (an
        originated call nobody answered, a caller turned away as busy): counted, but not active."""
        if started:
            self.active_calls.dec()
            self._calls_live -= 1
            self._calls_moved += 1
        self.calls.labels(outcome=outcome or "unknown").inc()
        if duration_s is not None and duration_s >= 0:
            self.call_duration.observe(duration_s)

    def step(self, flow: str) -> None:
        child = self._steps.get(flow)
        if child is None:
            child = self._steps[flow] = self.step_transitions.labels(flow=flow)
        child.inc()

    # -- providers ----------------------------------------------------------------------------------

    def observe_stt(self, seconds: float) -> None:
        self.stt_latency.observe(seconds)

    def observe_tts_first_audio(self, seconds: float) -> None:
        self.tts_first_audio.observe(seconds)

    def provider_error(self, provider: str, kind: str) -> None:
        self.provider_errors.labels(provider=provider, kind=kind).inc()

    def provider_retry(self, provider: str, kind: str) -> None:
        self.provider_retries.labels(provider=provider, kind=kind).inc()

    # -- media and telephony ------------------------------------------------------------------------

    def preroll_discarded(self, n: int) -> None:
        """Add a call's pre-roll frames let go before it listened (at its end, not per frame)."""
        if n > 0:
            self.preroll_discarded_total.inc(n)

    def frames_dropped(self, direction: str, n: int = 1) -> None:
        """Add ``n`` dropped frames; call with a call's total at its end, not once per frame."""
        if n <= 0:
            return
        child = self._dropped.get(direction)
        if child is None:
            raise ValueError(f"direction must be one of {DIRECTIONS}, not {direction!r}")
        child.inc(n)

    def observe_lateness_summary(self, histogram: LatencyHistogram) -> None:
        """Fold one call's outbound frame lateness (``session.player.lateness``) in, at call end."""
        self.frame_lateness.fold(histogram)

    def watch_pacer(self, read: PacerStats) -> None:
        """Export a native pacing thread's health (``ivr_pacer_*``), read from ``read`` at each scrape."""
        self.registry.register(_PacerCollector(self._namespace, read))

    def setup_waiting(self, waiting: int) -> None:
        """ARI callers waiting for a set-up slot now (:class:`ivr.call.setup_gate.SetupGate`)."""
        self.setups_waiting.set(waiting)

    def observe_setup_wait(self, seconds: float) -> None:
        self.setup_wait.observe(seconds)

    def ari_reconnected(self) -> None:
        self.ari_reconnects.inc()

    # -- exposition ---------------------------------------------------------------------------------

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """The registry in the format the ``Accept`` header asks for: (body, content type)."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self._exported), content_type
