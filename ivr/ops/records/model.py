"""What the records store holds: :class:`CallRecord` (one finished call) and :class:`Checkpoint` (a live
call's flow state, for resuming it on another instance).

A record is built from the runtime's report through :class:`CallReportLike`, the few attributes read
from it, so this package does not import the call layer above it.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ivr.ops.records.redaction import redact_text, redact_variables


class RecordsError(Exception):
    """The records database cannot be used; the message is one line an operator can act on."""


class CallReportLike(Protocol):
    """What a record is made from (``ivr.call.report.CallReport`` has it all)."""

    @property
    def call_id(self) -> str: ...
    @property
    def flow(self) -> str: ...
    @property
    def outcome(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def started_at(self) -> float: ...
    @property
    def ended_at(self) -> float: ...
    @property
    def errors(self) -> Sequence[str]: ...
    @property
    def response_latency_ms(self) -> Sequence[float]: ...
    @property
    def dtmf(self) -> Sequence[str]: ...
    @property
    def path(self) -> Sequence[str]: ...
    @property
    def transcript(self) -> Sequence[tuple[str, str]]: ...
    @property
    def variables(self) -> Mapping[str, Any]: ...


def default_instance_id() -> str:
    """``host-pid``: unique among the instances of one machine and, with distinct hostnames, of a fleet."""
    return f"{socket.gethostname() or 'ivr'}-{os.getpid()}"


def merge_instances(*groups: Iterable[str]) -> list[str]:
    """The instances that served a call, in the order they first did (an ordered union)."""
    seen: dict[str, None] = {}
    for group in groups:
        for name in group:
            if name:
                seen.setdefault(str(name), None)
    return list(seen)


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One finished call as stored (and as exported, one JSON object per line)."""

    call_id: str
    flow: str
    outcome: str
    reason: str
    started_at: float
    """Epoch seconds (``time.time()``)."""
    ended_at: float
    caller: str | None = None
    """Caller number/name as the telephony side gave it (Asterisk ``caller.number``)."""
    linkedid: str | None = None
    """Asterisk's ``linkedid``: joins this record with CDR and CEL rows."""
    direction: str | None = None
    """``inbound`` or ``outbound`` (``ivr originate``), when known."""
    path: list[str] = field(default_factory=list)
    """Step names in the order the call entered them (``flow:step`` for sub-flows)."""
    transcript: list[tuple[str, str]] = field(default_factory=list)
    """(speaker, text); sensitive captures are masked by the engine."""
    dtmf: list[str] = field(default_factory=list)
    """Keys in order; keys of sensitive steps are ``•``."""
    variables: dict[str, Any] = field(default_factory=dict)
    """Final flow variables; sensitive ones are masked."""
    errors: list[str] = field(default_factory=list)
    greeting_latency_ms: float | None = None
    """Arrival of the call (StasisStart) to the first frame of the first prompt."""
    response_latency_ms: list[float] = field(default_factory=list)
    """End of each caller utterance to the first frame of the IVR's answer."""
    recorded_at: float = 0.0
    instance: str | None = None
    """The ``ivr`` instance that finished the call (and wrote this record)."""
    instances: list[str] = field(default_factory=list)
    """Every instance that served the call, in order: more than one when the call was resumed."""
    resumed: bool = False
    """The call was resumed by another instance after the one serving it died."""
    flow_version: str | None = None
    """Content hash of the flow (with its subflows) the call ran on; a reload never changes a live call's."""
    recordings: list[dict[str, Any]] = field(default_factory=list)
    """Messages from ``record`` steps: ``step``, ``path`` (a WAV; None when sensitive: never stored),
    ``duration_s``, ``ended_by``."""

    @property
    def duration_s(self) -> float:
        return max(0.0, self.ended_at - self.started_at)

    @classmethod
    def from_report(
        cls,
        report: CallReportLike,
        *,
        caller: str | None = None,
        linkedid: str | None = None,
        direction: str | None = None,
        instance: str | None = None,
        now: float | None = None,
    ) -> CallRecord:
        """Build the stored form of a report, redacting anything that still looks like a secret."""
        now = time.time() if now is None else now
        started = _finite(report.started_at, now)
        ended = _finite(report.ended_at, 0.0) or now  # unanswered originates never set ended_at
        return cls(
            call_id=str(report.call_id),
            flow=str(report.flow),
            outcome=str(report.outcome),
            reason=redact_text(str(report.reason)),
            started_at=started,
            ended_at=max(ended, started),
            caller=caller,
            linkedid=linkedid,
            direction=direction,
            path=[str(p) for p in report.path],
            transcript=[(str(who), str(text)) for who, text in report.transcript],
            dtmf=[str(d) for d in report.dtmf],
            variables=redact_variables(report.variables),
            errors=[redact_text(str(e)) for e in report.errors],
            greeting_latency_ms=_optional_ms(getattr(report, "greeting_latency_ms", None)),
            response_latency_ms=[
                round(v, 3) for v in (float(x) for x in report.response_latency_ms) if math.isfinite(v)
            ],
            recorded_at=now,
            instance=instance,
            instances=merge_instances([instance] if instance else []),
            flow_version=str(getattr(report, "flow_version", "") or "") or None,
            recordings=[dict(r) for r in getattr(report, "recordings", None) or []],
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with ``duration_s`` added (what ``ivr calls export`` writes per line)."""
        return {
            "call_id": self.call_id,
            "flow": self.flow,
            "outcome": self.outcome,
            "reason": self.reason,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "duration_s": round(self.duration_s, 3),
            "caller": self.caller,
            "linkedid": self.linkedid,
            "direction": self.direction,
            "path": list(self.path),
            "transcript": [[who, text] for who, text in self.transcript],
            "dtmf": list(self.dtmf),
            "variables": self.variables,
            "errors": list(self.errors),
            "greeting_latency_ms": self.greeting_latency_ms,
            "response_latency_ms": list(self.response_latency_ms),
            "recorded_at": self.recorded_at,
            "instance": self.instance,
            "instances": list(self.instances),
            "resumed": self.resumed,
            "flow_version": self.flow_version,
            "recordings": [dict(r) for r in self.recordings],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CallRecord:
        """The inverse of :meth:`to_dict` (``duration_s`` is derived and ignored; older exports lack the
        instance fields)."""
        return cls(
            call_id=data["call_id"],
            flow=data["flow"],
            outcome=data["outcome"],
            reason=data["reason"],
            started_at=float(data["started_at"]),
            ended_at=float(data["ended_at"]),
            caller=data.get("caller"),
            linkedid=data.get("linkedid"),
            direction=data.get("direction"),
            path=list(data.get("path", [])),
            transcript=[(str(w), str(t)) for w, t in data.get("transcript", [])],
            dtmf=list(data.get("dtmf", [])),
            variables=dict(data.get("variables", {})),
            errors=list(data.get("errors", [])),
            greeting_latency_ms=_optional_ms(data.get("greeting_latency_ms")),
            response_latency_ms=[float(v) for v in data.get("response_latency_ms", [])],
            recorded_at=float(data.get("recorded_at", 0.0)),
            instance=data.get("instance"),
            instances=[str(i) for i in data.get("instances") or []],
            resumed=bool(data.get("resumed", False)),
            flow_version=data.get("flow_version"),
            recordings=[dict(r) for r in data.get("recordings") or []],
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A live call's flow state, saved as it changes so that another instance can resume the call.

    The runtime fills the first group; the store keeps the second (who owns the call now, who served it,
    how often it was resumed, and ``seq``, bumped by every write, which makes a resume a compare-and-set).
    """

    call_id: str
    flow: str
    flow_version: str
    """The flow's version or content hash: a resume into a changed flow can be refused or adapted."""
    step: str
    variables: Mapping[str, Any] = field(default_factory=dict)
    """Flow variables **without** sensitive ones (the engine leaves them out); redacted again on save."""
    retries: Mapping[str, int] = field(default_factory=dict)
    """Retry counters, e.g. ``{"menu:no_input": 1}``."""
    state: Any = None
    """Opaque JSON the engine needs to resume (stored as given: put no secrets in it)."""
    channel_id: str | None = None
    """The caller's Asterisk channel id, as the dialplan hands it back on re-entry."""
    linkedid: str | None = None
    instance: str = ""
    """Store-kept: the instance that owns the call now (only it may update the checkpoint)."""
    instances: tuple[str, ...] = ()
    """Store-kept: every instance that owned the call, in order."""
    resumes: int = 0
    """Store-kept: how many times the call was resumed."""
    seq: int = 0
    """Store-kept: bumped by every write; a resume succeeds only on the ``seq`` it read."""
    updated_at: float = 0.0

    @property
    def resumed(self) -> bool:
        return self.resumes > 0


def checkpoint_snapshot(checkpoint: Checkpoint, instance: str, now: float) -> dict[str, Any]:
    """The row to write, serialised now (so later changes by the caller do not leak into the write).

    Raises :class:`RecordsError` when ``state`` is not JSON.
    """
    try:
        state = json.dumps(checkpoint.state, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise RecordsError(f"call {checkpoint.call_id}: checkpoint state is not JSON: {exc}") from None
    return {
        "call_id": str(checkpoint.call_id),
        "channel_id": checkpoint.channel_id,
        "linkedid": checkpoint.linkedid,
        "flow": str(checkpoint.flow),
        "flow_version": str(checkpoint.flow_version),
        "step": str(checkpoint.step),
        "variables": _dumps(redact_variables(checkpoint.variables)),
        "retries": _dumps({str(k): int(v) for k, v in checkpoint.retries.items()}),
        "state": state,
        "instance": instance,
        "instances": _dumps([instance]),
        "now": now,
    }


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _optional_ms(value: Any) -> float | None:
    if value is None:
        return None
    number = _finite(value, math.nan)
    return None if math.isnan(number) else round(number, 3)


def _finite(value: float, default: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return number if math.isfinite(number) else default
