"""The records a running engine keeps (path, transcript, subflow frames), shared by its modules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ivr.flow.model import Flow

Waiting = Literal["start", "prompt", "input", "classify", "webhook", "transfer", "record", "done"]


@dataclass(frozen=True)
class PathRecord:
    """One visited step and how the engine got there (never a value)."""

    flow: str
    step: str
    kind: str
    via: str


@dataclass(frozen=True)
class TranscriptEntry:
    speaker: Literal["ivr", "caller"]
    text: str
    step: str
    flow: str


@dataclass(frozen=True)
class RecordingEntry:
    """A message the caller left (``record`` step): where it is, how long, why it ended."""

    step: str
    flow: str
    duration_s: float
    ended_by: str
    path: str | None
    """None for a sensitive recording: it was measured, never stored."""


@dataclass
class Frame:
    name: str
    flow: Flow
    vars: dict[str, Any]
    return_to: str | None = None  # the parent's subflow step
