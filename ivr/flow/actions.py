"""Actions: what the engine asks the call runtime to do. Small frozen dataclasses, no I/O.

:meth:`ivr.flow.engine.FlowEngine.handle` returns a list of actions to perform in order:

- :class:`Play` speaks ``text`` (or plays ``audio``); answer with ``PromptFinished`` or ``BargeIn``.
  A spoken prompt is a sequence of :class:`PromptPart` (a reprompt's prefix, the question, each option
  of a dynamic menu), each ``cacheable`` on its own when it came from a text without template variables:
  play them back to back as one playback (barge-in stops all of it). ``text`` is the parts joined.
- :class:`Listen` always follows the ``Play`` of a question in the same list: listen for speech and/or
  DTMF per its settings, start the no-input timer when the prompt ends (with ``barge_in`` speech or keys
  may arrive earlier; stop the playback then). Its ``turn_*`` and ``backchannel_ms`` fields are the
  question's turn-taking settings (:mod:`ivr.flow.model_turns`). It stays in force until the engine returns another
  Play/Listen or leaves the step; answer with ``SpeechRecognized``/``DtmfReceived``/``NoInput``/
  ``DigitTimeout``. ``global_dtmf`` is false during digit captures: keys are data there.
- :class:`Classify` asks the LLM matcher to map ``text`` onto one of ``options``; answer with
  ``ClassificationResult`` (or ``ProviderError``: the engine falls back to keyword matching).
- :class:`HttpRequest` performs a webhook (see :mod:`ivr.flow.webhook`); answer with ``WebhookResult``
  or ``WebhookFailed``. Play ``filler`` if the request takes longer than ``filler_after_ms``. Its
  ``repr`` hides secret values; never log ``headers`` yourself.
- :class:`Record` records the caller (a message): beep, then until ``end_silence_ms`` of silence after
  speech, ``end_key`` or ``max_ms``; answer with ``RecordingFinished`` or ``RecordingFailed``. A
  ``sensitive`` recording is measured and never stored.
- :class:`Transfer` to a dialplan target or an endpoint; answer with ``TransferCompleted``/``TransferFailed``.
- :class:`HangupCall` hangs up; always followed by :class:`End` in the same list.
- :class:`Log` is a structured log line (never contains sensitive values).
- :class:`End`: the engine is finished; tear the call down (or leave it to the transfer).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class PromptPart:
    """One piece of a spoken prompt; ``cacheable`` when its text has no template variables."""

    text: str
    cacheable: bool = False


@dataclass(frozen=True)
class Play:
    step: str
    text: str | None = None
    audio: str | None = None
    barge_in: bool = True
    cacheable: bool = False
    language: str = "en-US"
    voice: str | None = None
    tts: str | None = None
    tts_model: str | None = None
    tts_instructions: str | None = None
    parts: tuple[PromptPart, ...] = ()

    @property
    def segments(self) -> tuple[PromptPart, ...]:
        """The parts to speak in order (one part when the action was built from ``text`` alone)."""
        if self.parts:
            return self.parts
        return (PromptPart(self.text, self.cacheable),) if self.text is not None else ()

    @classmethod
    def spoken(cls, step: str, parts: list[PromptPart] | tuple[PromptPart, ...], **kwargs: object) -> Play:
        """A prompt of several parts: ``text`` joins them, ``cacheable`` holds when every part is."""
        parts = tuple(p for p in parts if p.text)
        text = " ".join(p.text for p in parts)
        return cls(step, text, cacheable=all(p.cacheable for p in parts), parts=parts, **kwargs)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Listen:
    step: str
    speech: bool = True
    dtmf: bool = True
    no_input_timeout_ms: int = 5000
    endpointing_silence_ms: int = 700
    max_utterance_ms: int = 15_000
    inter_digit_timeout_ms: int = 3000
    max_digits: int | None = None
    terminator: str | None = None
    global_dtmf: bool = True
    hints: tuple[str, ...] = ()
    sensitive: bool = False
    language: str = "en-US"
    stt: str | None = None
    stt_model: str | None = None
    turn_model: bool = True
    """Ask the end-of-turn model at pauses (when the runtime has one); else silence alone ends the turn."""
    turn_min_silence_ms: int = 200
    turn_max_silence_ms: int = 1500
    turn_threshold: float = 0.5
    words_check: bool | Literal["auto"] = False
    """Transcribe the words so far at each pause and end the turn early only when they already answer the
    question (``auto``: only where the call's speech-to-text runs on this machine)."""
    incomplete_silence_ms: int = 1500
    """With ``words_check``: silence that ends an answer whose words are not whole yet."""
    backchannel_ms: int = 600
    """Speech over the prompt shorter than this pauses it, then it plays on (0: any speech interrupts)."""


@dataclass(frozen=True)
class ClassifyOption:
    name: str
    description: str | None = None
    examples: tuple[str, ...] = ()


@dataclass(frozen=True)
class Classify:
    step: str
    text: str
    options: tuple[ClassifyOption, ...]
    model: str = "gpt-4o-mini"
    language: str = "en-US"


@dataclass(frozen=True)
class HttpRequest:
    step: str
    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    json_body: Any = None
    timeout_ms: int = 5000
    filler: str | None = None
    filler_after_ms: int = 1500
    secrets: tuple[str, ...] = ()

    def redact(self, text: str) -> str:
        """Mask secret values; values under 4 characters are not real secrets and would mangle text."""
        for secret in self.secrets:
            if len(secret) >= 4:
                text = text.replace(secret, "***")
        return text

    def __repr__(self) -> str:
        headers = {k: self.redact(v) for k, v in self.headers.items()}
        return (
            f"HttpRequest(step={self.step!r}, method={self.method!r}, url={self.redact(self.url)!r}, "
            f"headers={headers!r}, timeout_ms={self.timeout_ms})"
        )

    __str__ = __repr__


@dataclass(frozen=True)
class Transfer:
    step: str
    endpoint: str | None = None
    context: str | None = None
    extension: str | None = None
    priority: int = 1
    timeout_s: int = 30
    caller_id: str | None = None
    variables: Mapping[str, str] = field(default_factory=dict)

    @property
    def to_dialplan(self) -> bool:
        return self.endpoint is None


@dataclass(frozen=True)
class Record:
    step: str
    max_ms: int = 60_000
    end_silence_ms: int = 3000
    no_input_timeout_ms: int = 5000
    beep: bool = True
    end_key: str | None = "#"
    sensitive: bool = False
    name: str = ""
    """A file-name-safe label for the recording (flow and step)."""


@dataclass(frozen=True)
class HangupCall:
    reason: str = "normal"


@dataclass(frozen=True)
class Log:
    level: Literal["debug", "info", "warning", "error"]
    message: str
    step: str | None = None


@dataclass(frozen=True)
class End:
    outcome: Literal["hangup", "caller_hangup", "transferred", "error"]
    reason: str = ""


Action = Play | Listen | Classify | HttpRequest | Record | Transfer | HangupCall | Log | End
