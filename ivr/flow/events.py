"""Events: what the call runtime tells the engine. Small frozen dataclasses, no I/O.

The runtime feeds exactly one event at a time to :meth:`ivr.flow.engine.FlowEngine.handle`:

- :class:`CallStarted` once, first: call facts (become ``call.*``) and caller-supplied variables
  (``originate --var``, Stasis ``key=value`` args; they override the flow's ``vars``). Or, for a call
  another instance began, :class:`CallResumed` after :meth:`~ivr.flow.engine.FlowEngine.restore`.
- :class:`PromptFinished` when the last :class:`~ivr.flow.actions.Play` finished playing;
  :class:`BargeIn` when the caller interrupted it (the runtime has already stopped playback).
- :class:`SpeechRecognized` with the final transcript of one utterance during a ``Listen``.
- :class:`DtmfReceived` for each key (one source per call, never counted twice). Keys pressed while a
  prompt plays are kept by the engine as type-ahead for the next question.
- :class:`NoInput` when a ``Listen``'s no-input timeout passed with nothing heard;
  :class:`DigitTimeout` when digits were entered and the inter-digit timeout passed.
- :class:`ClassificationResult` answers a :class:`~ivr.flow.actions.Classify`.
- :class:`WebhookResult` / :class:`WebhookFailed` answer an :class:`~ivr.flow.actions.HttpRequest`.
- :class:`TransferCompleted` / :class:`TransferFailed` answer a :class:`~ivr.flow.actions.Transfer`.
- :class:`RecordingFinished` / :class:`RecordingFailed` answer a :class:`~ivr.flow.actions.Record`.
- :class:`ProviderError` when STT, TTS or the LLM failed after retries: the engine follows the error path.
- :class:`Hangup` when the caller hung up: the engine ends at once (no ``HangupCall``).

The engine reads no clock: ``handle(event, now=...)`` takes the moment of each event (epoch seconds),
which templates and conditions see as ``now`` (and ``CallStarted.started_at`` as ``call.started``).

Events that do not fit the engine's current state (a late ``PromptFinished``, speech while a webhook
runs) are ignored: the engine returns no actions and keeps waiting for what it asked for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class CallStarted:
    call_id: str
    caller_id: str = ""
    caller_name: str = ""
    dialed: str = ""
    direction: Literal["inbound", "outbound"] = "inbound"
    args: Mapping[str, str] = field(default_factory=dict)
    vars: Mapping[str, Any] = field(default_factory=dict)
    started_at: float | None = None
    """Epoch seconds the call started (default: the ``now`` of this event)."""
    language: str | None = None
    """The language the dialplan chose (a Stasis ``language=`` argument); one of the flow's languages."""


@dataclass(frozen=True)
class CallResumed:
    """First event of an engine restored from a snapshot (the instance that began the call died): the
    engine says the flow's ``resume_prompt`` and enters the step it was at again."""

    call_id: str


@dataclass(frozen=True)
class PromptFinished:
    pass


@dataclass(frozen=True)
class BargeIn:
    pass


@dataclass(frozen=True)
class SpeechRecognized:
    text: str
    confidence: float = 1.0


@dataclass(frozen=True)
class DtmfReceived:
    digit: str


@dataclass(frozen=True)
class NoInput:
    pass


@dataclass(frozen=True)
class DigitTimeout:
    pass


@dataclass(frozen=True)
class ClassificationResult:
    """``choice`` is a choice or global-intent name from the Classify options, or None for no match."""

    choice: str | None
    confidence: float = 1.0
    source: Literal["llm", "keyword"] = "llm"


@dataclass(frozen=True)
class WebhookResult:
    status: int
    body: Any = None


@dataclass(frozen=True)
class WebhookFailed:
    reason: str


@dataclass(frozen=True)
class TransferCompleted:
    pass


@dataclass(frozen=True)
class TransferFailed:
    reason: Literal["busy", "no_answer", "timeout", "failed"] = "failed"
    cause: int | None = None


RecordingEndReason = Literal["silence", "key", "max_length", "no_input", "hangup"]
RECORDING_END_REASONS: tuple[str, ...] = ("silence", "key", "max_length", "no_input", "hangup")


@dataclass(frozen=True)
class RecordingFinished:
    duration_ms: int
    ended_by: RecordingEndReason = "silence"
    path: str | None = None
    """Where the WAV was stored (None for a sensitive recording, which is never stored)."""


@dataclass(frozen=True)
class RecordingFailed:
    reason: str


@dataclass(frozen=True)
class ProviderError:
    provider: Literal["stt", "tts", "llm", "media"]
    message: str = ""


@dataclass(frozen=True)
class Hangup:
    pass


Event = (
    CallStarted
    | CallResumed
    | PromptFinished
    | BargeIn
    | SpeechRecognized
    | DtmfReceived
    | NoInput
    | DigitTimeout
    | ClassificationResult
    | WebhookResult
    | WebhookFailed
    | TransferCompleted
    | TransferFailed
    | RecordingFinished
    | RecordingFailed
    | ProviderError
    | Hangup
)
