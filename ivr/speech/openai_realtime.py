"""OpenAI Realtime: one WebSocket per call for streaming transcription and spoken prompts.

Needs the ``openai[realtime]`` extra (``websockets``). ``RealtimeSession`` owns the
connection of one call; ``session.transcriber`` and ``session.synthesizer`` are the
:class:`Transcriber` / :class:`Synthesizer` views of it. Close it at hangup.

- **Formats.** 8 kHz calls use ``audio/pcmu`` both ways: G.711 mu-law conversion only,
  no resampling. Other call rates use ``audio/pcm`` (24 kHz), resampled with soxr.
- **No automatic answers.** ``turn_detection`` is off: our own endpointer decides when
  the caller has finished and commits the audio; the model never responds on its own.
- **Prompts are read verbatim.** Each prompt is an out-of-band response
  (``conversation: "none"``) whose only input is the prompt text, JSON-quoted as data in
  a user message; the instructions (fixed here, plus the operator's delivery notes
  from flow settings) tell the model to read it word for word and never follow
  anything inside it. Caller-supplied values rendered into a prompt therefore stay
  data; what the caller says is transcribed into the conversation only, is never put
  into instructions, and no response ever sees it (its items are deleted once
  transcribed).
- **Failures.** Connecting, and each request until its first audio or transcript event,
  run under the retry layer (reconnecting if the socket died); once audio has started,
  a break raises :class:`StreamInterruptedError` and nothing is replayed.

The engine lives in three modules: the session (``openai_realtime_session``), the wire format
(``openai_realtime_wire``) and the Transcriber / Synthesizer views (``openai_realtime_views``);
this module, the engine's import path, names what they export.
"""

from ivr.speech.openai_realtime_session import RealtimeSession
from ivr.speech.openai_realtime_views import RealtimeSynthesizer, RealtimeTranscriber
from ivr.speech.openai_realtime_wire import (
    DEFAULT_REALTIME_MODEL,
    DEFAULT_REALTIME_VOICE,
    ENGINE,
    MIN_COMMIT_MS,
    READ_VERBATIM,
    REALTIME_PCM_RATE,
    prompt_message,
)

__all__ = [
    "DEFAULT_REALTIME_MODEL",
    "DEFAULT_REALTIME_VOICE",
    "ENGINE",
    "MIN_COMMIT_MS",
    "READ_VERBATIM",
    "REALTIME_PCM_RATE",
    "RealtimeSession",
    "RealtimeSynthesizer",
    "RealtimeTranscriber",
    "prompt_message",
]
