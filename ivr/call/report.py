"""What one call did, for logs, metrics and call records, and the live trace of it.

Kept apart from the runtime that fills it so that records, metrics and the simulator can read a call's
report without importing the machinery that runs calls.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

RECENT_REPORTS = 1000
"""How many finished calls an app keeps in memory for inspection (call records keep every call)."""

MASKED_DIGIT = "•"
"""Recorded instead of a key pressed for a sensitive capture (or outside any question)."""


@dataclass(frozen=True, slots=True)
class TraceEvent:
    """What a call does, as it happens, for ``ivr simulate`` and tests (never sensitive values).

    ``kind``: ``step`` (the engine entered ``step``), ``prompt`` (the IVR started saying ``text``),
    ``listen`` (the prompt is over and the IVR waits for an answer), ``heard`` (a caller utterance was
    transcribed as ``text``), ``dtmf`` (a key, masked when sensitive), ``record`` (a message is being
    recorded, after the beep), ``end`` (``text`` is the outcome).
    """

    kind: str
    step: str
    text: str = ""
    at: float = 0.0


Tracer = Callable[[TraceEvent], None]


@dataclass
class CallReport:
    """What happened on one call, for logs and call records (no sensitive values)."""

    call_id: str
    flow: str
    outcome: str = ""
    reason: str = ""
    started_at: float = field(default_factory=time.time)
    ended_at: float = 0.0
    errors: list[str] = field(default_factory=list)
    greeting_latency_ms: float | None = None
    """From the call's arrival (StasisStart) to the first frame of the first prompt."""
    response_latency_ms: list[float] = field(default_factory=list)
    """Per spoken turn: from the end of the caller's speech (the last voiced frame, not the endpointing
    decision a trailing silence later) to the first frame of whatever the IVR played next (a filler
    included), recorded even when a hangup or barge-in cuts that reply short."""
    stt_ms: list[float] = field(default_factory=list)
    """Per answer: from the end of the caller's turn to its transcript, what the reply waited for
    speech-to-text. About 0 when a pause's words check had transcribed the answer already (the work ran
    during the pause, while the caller might still have gone on)."""
    tts_first_audio_ms: list[float] = field(default_factory=list)
    """From asking for each synthesised prompt to its first frame on the wire."""
    provider_errors: list[str] = field(default_factory=list)
    """Which provider failed (stt, tts, llm, media), once per failure that reached the flow."""
    caller: str = ""
    direction: str = "inbound"
    linkedid: str | None = None
    """Asterisk's ``CHANNEL(linkedid)``, to join with CDR/CEL."""
    dtmf: list[str] = field(default_factory=list)
    """Keys as received; masked by the engine in ``transcript`` when the step is sensitive."""
    path: list[str] = field(default_factory=list)
    transcript: list[tuple[str, str]] = field(default_factory=list)
    """(speaker, text) in order; sensitive captures are masked."""
    variables: dict[str, Any] = field(default_factory=dict)
    """Final flow variables, sensitive ones masked."""
    flow_version: str = ""
    """Content hash of the flow (and subflows) the call ran on: calls finish on the version they began."""
    recordings: list[dict[str, Any]] = field(default_factory=list)
    """Messages left at ``record`` steps: step, path (None when sensitive: never stored), duration_s, ended_by."""
    handed_over: bool = False
    """The call goes on elsewhere (another instance or process resumed it after this one lost its ARI
    connection): its one record is written there, not here."""
