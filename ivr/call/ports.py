"""What a call runtime needs from the outside world, as small protocols.

The runtime drives one call's flow engine; these ports let the same runtime serve ARI calls, dialplan-only
AudioSocket calls and the simulator without knowing which it runs on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Protocol

from ivr.audiosocket.inbound import SessionEvent
from ivr.audiosocket.player import PcmSource, Playback
from ivr.flow import actions as act
from ivr.flow import events as ev
from ivr.flow.actions import Transfer
from ivr.flow.events import TransferCompleted, TransferFailed
from ivr.flow.model import FlowSettings
from ivr.speech.base import Synthesizer, Transcriber


class CallMedia(Protocol):
    """The call's audio: an :class:`~ivr.audiosocket.session.AudioSocketSession` satisfies it."""

    @property
    def rate(self) -> int: ...

    @property
    def closed(self) -> bool: ...

    def events(self) -> AsyncIterator[SessionEvent]: ...

    def play(self, source: PcmSource, *, prebuffer_ms: int | None = None) -> Playback: ...

    def stop_playback(self) -> int: ...

    def hangup(self, reason: str = ...) -> None: ...


class CallControl(Protocol):
    """Telephony actions on the caller's channel (ARI), or their refusal (dialplan-only mode).

    ``transfer`` gets the channel variables to set on the caller first (``IVR_<NAME>`` for collected
    flow values plus the step's own ``variables``).
    """

    async def hangup(self, reason: str) -> None: ...

    async def transfer(
        self, action: Transfer, variables: Mapping[str, str]
    ) -> TransferCompleted | TransferFailed: ...


class CallSpeech(Protocol):
    """One call's speech engines (:class:`ivr.speech.registry.CallSpeech` satisfies it)."""

    transcriber: Transcriber
    synthesizer: Synthesizer

    async def aclose(self) -> None: ...


SpeechFactory = Callable[[FlowSettings, int], CallSpeech]
"""Builds a call's speech engines from its flow's settings and the call's sample rate."""


Classifier = Callable[[act.Classify], Awaitable[ev.ClassificationResult]]
"""The LLM intent matcher (``matcher: llm``)."""

WebhookHandler = Callable[[act.HttpRequest], Awaitable[ev.WebhookResult | ev.WebhookFailed]]
"""Performs a flow's HTTP request (``ivr run`` passes its allow-listed :class:`ivr.flow.webhook.WebhookClient`)."""
