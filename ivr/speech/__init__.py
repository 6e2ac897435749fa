"""Speech providers: speech-to-text and text-to-speech engines behind two small interfaces.

``Transcriber`` / ``Synthesizer`` (``base``), provider errors (``errors``), the one retry
layer (``retry``), the prompt cache (``cache``) and engine selection by name
(``registry``). Engines live in ``openai_http``, ``openai_realtime`` (``openai[realtime]``
extra) and ``offline`` (``offline`` extra) and are imported only when chosen.
This package may import ``ivr.media``, never the call, flow or transport layers.
"""

from ivr.speech.base import Synthesizer, Transcriber, Transcript, VoiceIdentity, closing
from ivr.speech.cache import CachingSynthesizer, PromptCache, cache_key
from ivr.speech.errors import (
    BadResponseError,
    DeadlineExceededError,
    ProviderAuthError,
    ProviderConfigError,
    ProviderError,
    QuotaExceededError,
    RequestRejectedError,
    StreamInterruptedError,
    TransientProviderError,
)
from ivr.speech.registry import STT_ENGINES, TTS_ENGINES, CallSpeech, SpeechRegistry, SpeechSettings
from ivr.speech.retry import RetryPolicy, call_with_retry

__all__ = [
    "STT_ENGINES",
    "TTS_ENGINES",
    "BadResponseError",
    "CachingSynthesizer",
    "CallSpeech",
    "DeadlineExceededError",
    "PromptCache",
    "ProviderAuthError",
    "ProviderConfigError",
    "ProviderError",
    "QuotaExceededError",
    "RequestRejectedError",
    "RetryPolicy",
    "SpeechRegistry",
    "SpeechSettings",
    "StreamInterruptedError",
    "Synthesizer",
    "Transcriber",
    "Transcript",
    "TransientProviderError",
    "VoiceIdentity",
    "cache_key",
    "call_with_retry",
    "closing",
]
