"""What a call runtime needs from the outside world, as small protocols.

The runtime drives one call's flow engine; these ports let the same runtime serve ARI calls, dialplan-only
AudioSocket calls and the simulator without knowing which it runs on. The call's audio is an
:class:`ivr.transport.MediaTransport` (AudioSocket or WebSocket media).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from ivr.flow import actions as act
from ivr.flow import events as ev
from ivr.flow.actions import Transfer
from ivr.flow.events import TransferCompleted, TransferFailed
from ivr.flow.model import FlowSettings
from ivr.speech.base import Synthesizer, Transcriber


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
