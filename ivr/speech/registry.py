"""Choosing speech engines by name, from flow settings or config.

Engine names:

============== =========== ====================================================================
name           does        what
============== =========== ====================================================================
openai         STT         ``/audio/transcriptions`` over HTTP, ``gpt-transcribe`` (default STT)
openai         TTS         alias of ``openai-realtime`` (``/audio/speech`` is being shut down)
openai-realtime STT + TTS  one Realtime WebSocket per call, ``gpt-realtime-2.1-mini``
openai-speech  TTS         legacy ``/audio/speech`` (``gpt-4o-mini-tts``), shuts down 2027-01-06
offline        STT + TTS   faster-whisper ``tiny.en`` / piper ``en_US-joe-medium`` (``offline`` extra)
sim-text       STT + TTS   simulation engines for ``ivr simulate --text`` and tests, never a default
============== =========== ====================================================================

The API key comes only from the environment (``OPENAI_API_KEY``, endpoint from
``OPENAI_BASE_URL``); the shared ``AsyncOpenAI`` client is created on first use, so
a process using only offline engines needs no key. HTTP and offline engines are
shared by all calls; Realtime engines belong to one call (:meth:`SpeechRegistry.open_call`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ivr.speech.base import Synthesizer, Transcriber
from ivr.speech.cache import CachingSynthesizer, PromptCache
from ivr.speech.errors import ProviderConfigError
from ivr.speech.executor import EngineSpec, RemoteSynthesizer, RemoteTranscriber, SpeechPool
from ivr.speech.openai_client import OpenAIClientSource
from ivr.speech.retry import DEFAULT_POLICY, RetryPolicy

STT_ENGINES: tuple[str, ...] = ("openai", "openai-realtime", "offline", "sim-text")
TTS_ENGINES: tuple[str, ...] = ("openai", "openai-realtime", "openai-speech", "offline", "sim-text")
TTS_ALIASES: Mapping[str, str] = {"openai": "openai-realtime"}


@dataclass(frozen=True, slots=True)
class SpeechSettings:
    """What a flow (or the config) chose. ``None`` means the engine's default."""

    stt_engine: str = "openai"
    tts_engine: str = "openai-realtime"
    stt_model: str | None = None
    tts_model: str | None = None
    voice: str | None = None
    language: str | None = None
    instructions: str | None = None


class CallSpeech:
    """The engines of one call. ``aclose()`` at hangup releases per-call connections."""

    def __init__(self, transcriber: Transcriber, synthesizer: Synthesizer) -> None:
        self.transcriber = transcriber
        self.synthesizer = synthesizer
        self._closed = False

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Shared engines have no-op aclose(); a Realtime session is closed once by either view.
        await self.transcriber.aclose()
        await self.synthesizer.aclose()


class SpeechRegistry:
    """Builds engines by name; one per process (it holds the shared client and models)."""

    def __init__(
        self,
        *,
        env: Mapping[str, str] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        policy: RetryPolicy = DEFAULT_POLICY,
        pool: SpeechPool | None = None,
    ) -> None:
        self.client = OpenAIClientSource(env)
        self.policy = policy
        self.pool = pool
        """Where offline inference runs; None runs it in this process (its own worker threads)."""
        self.cache = PromptCache(Path(cache_dir)) if cache_dir is not None else None
        self._shared_stt: dict[tuple[str, str | None, str | None], Transcriber] = {}
        self._shared_tts: dict[tuple[str, str | None, str | None, str | None], Synthesizer] = {}

    @staticmethod
    def check(settings: SpeechSettings) -> None:
        """Reject unknown engine names early (flow validation)."""
        if settings.stt_engine not in STT_ENGINES:
            raise ProviderConfigError(
                f"unknown speech-to-text engine {settings.stt_engine!r}; choose one of {', '.join(STT_ENGINES)}",
                engine=settings.stt_engine,
            )
        if settings.tts_engine not in TTS_ENGINES:
            raise ProviderConfigError(
                f"unknown text-to-speech engine {settings.tts_engine!r}; choose one of {', '.join(TTS_ENGINES)}",
                engine=settings.tts_engine,
            )

    def transcriber(
        self, engine: str, *, model: str | None = None, language: str | None = None
    ) -> Transcriber:
        """A shared (not per-call) transcriber: ``openai``, ``offline`` or ``sim-text``."""
        key = (engine, model, language)
        found = self._shared_stt.get(key)
        if found is not None:
            return found
        made: Transcriber
        if engine == "openai":
            from ivr.speech.openai_http import DEFAULT_TRANSCRIBE_MODEL, OpenAITranscriber

            made = OpenAITranscriber(
                self.client, model=model or DEFAULT_TRANSCRIBE_MODEL, language=language, policy=self.policy
            )
        elif engine == "offline" and self.pool is not None:
            spec = EngineSpec("stt", engine, model=model, language=language or "en")
            made = RemoteTranscriber(self.pool, spec, engine=engine)
        elif engine == "offline":
            from ivr.speech.offline import WhisperTranscriber

            made = WhisperTranscriber(model, language=language or "en")
        elif engine == "sim-text":
            from ivr.speech.simulated import TextTranscriber

            made = TextTranscriber()
        elif engine == "openai-realtime":
            raise ProviderConfigError(
                "openai-realtime is per call: use SpeechRegistry.open_call()", engine=engine
            )
        else:
            raise ProviderConfigError(
                f"unknown speech-to-text engine {engine!r}; choose one of {', '.join(STT_ENGINES)}",
                engine=engine,
            )
        self._shared_stt[key] = made
        return made

    def synthesizer(
        self,
        engine: str,
        *,
        model: str | None = None,
        voice: str | None = None,
        instructions: str | None = None,
    ) -> Synthesizer:
        """A shared (not per-call) synthesizer: ``openai-speech``, ``offline`` or ``sim-text``; not cached."""
        key = (engine, model, voice, instructions)
        found = self._shared_tts.get(key)
        if found is not None:
            return found
        made: Synthesizer
        if engine == "openai-speech":
            from ivr.speech.openai_http import (
                DEFAULT_SPEECH_MODEL,
                DEFAULT_SPEECH_VOICE,
                OpenAISpeechSynthesizer,
            )

            made = OpenAISpeechSynthesizer(
                self.client,
                model=model or DEFAULT_SPEECH_MODEL,
                voice=voice or DEFAULT_SPEECH_VOICE,
                instructions=instructions,
                policy=self.policy,
            )
        elif engine == "offline":
            from ivr.speech.offline import PiperSynthesizer

            made = PiperSynthesizer(model)
            if self.pool is not None:
                spec = EngineSpec("tts", engine, model=model, voice=voice, instructions=instructions)
                made = RemoteSynthesizer(self.pool, spec, made)
        elif engine == "sim-text":
            from ivr.speech.simulated import ToneSynthesizer

            made = ToneSynthesizer()
        elif TTS_ALIASES.get(engine, engine) == "openai-realtime":
            raise ProviderConfigError(f"{engine} is per call: use SpeechRegistry.open_call()", engine=engine)
        else:
            raise ProviderConfigError(
                f"unknown text-to-speech engine {engine!r}; choose one of {', '.join(TTS_ENGINES)}",
                engine=engine,
            )
        self._shared_tts[key] = made
        return made

    def open_call(self, settings: SpeechSettings, *, rate: int) -> CallSpeech:
        """The engines for one call at ``rate``; Realtime STT and TTS share one WebSocket.

        Nothing connects here: connections open on first use, and a missing API key
        surfaces then as a :class:`ProviderConfigError` (the flow's error path).
        """
        self.check(settings)
        tts_engine = TTS_ALIASES.get(settings.tts_engine, settings.tts_engine)
        session = None
        if "openai-realtime" in (settings.stt_engine, tts_engine):
            from ivr.speech.openai_realtime import (
                DEFAULT_REALTIME_MODEL,
                DEFAULT_REALTIME_VOICE,
                RealtimeSession,
            )

            session = RealtimeSession(
                self.client,
                rate=rate,
                model=settings.tts_model
                if tts_engine == "openai-realtime" and settings.tts_model
                else DEFAULT_REALTIME_MODEL,
                voice=settings.voice or DEFAULT_REALTIME_VOICE,
                instructions=settings.instructions,
                language=settings.language,
                policy=self.policy,
                **(
                    {"transcribe_model": settings.stt_model}
                    if settings.stt_engine == "openai-realtime" and settings.stt_model
                    else {}
                ),
            )
        transcriber: Transcriber
        if settings.stt_engine == "openai-realtime":
            assert session is not None
            transcriber = session.transcriber
        else:
            transcriber = self.transcriber(
                settings.stt_engine, model=settings.stt_model, language=settings.language
            )
        synthesizer: Synthesizer
        if tts_engine == "openai-realtime":
            assert session is not None
            synthesizer = session.synthesizer
        else:
            synthesizer = self.synthesizer(
                tts_engine, model=settings.tts_model, voice=settings.voice, instructions=settings.instructions
            )
        if self.cache is not None:
            synthesizer = CachingSynthesizer(synthesizer, self.cache)
        return CallSpeech(transcriber, synthesizer)

    async def warm_up(self, uses: Sequence[SpeechSettings]) -> None:
        """Load, before the first call, everything calls with these settings will need.

        A first use in mid-call would stall every live call's audio: SDK modules import and clients
        construct for ~100 ms, offline models load for seconds. Engines in a :attr:`pool` were loaded
        by its workers; in-process offline models load here (in a thread).
        """
        self.check_all(uses)
        engines = {u.stt_engine for u in uses} | {TTS_ALIASES.get(u.tts_engine, u.tts_engine) for u in uses}
        if engines & {"openai", "openai-realtime", "openai-speech"}:
            import ivr.speech.openai_http
            import ivr.speech.openai_realtime  # noqa: F401

            if self.client.configured:
                self.client.warm()
        for use in uses:
            stt = use.stt_engine
            if stt in ("openai", "offline", "sim-text"):
                warm = getattr(
                    self.transcriber(stt, model=use.stt_model, language=use.language), "load", None
                )
                if warm is not None:
                    await warm()
            tts = TTS_ALIASES.get(use.tts_engine, use.tts_engine)
            if tts in ("openai-speech", "offline", "sim-text"):
                synth = self.synthesizer(
                    tts, model=use.tts_model, voice=use.voice, instructions=use.instructions
                )
                synth.identity(voice=use.voice, instructions=use.instructions)  # version lookups, once
                warm = getattr(synth, "load", None)
                if warm is not None:
                    await warm()

    def check_all(self, uses: Sequence[SpeechSettings]) -> None:
        for use in uses:
            self.check(use)

    async def aclose(self) -> None:
        """Close the shared HTTP client (offline models stay loaded for the process)."""
        await self.client.aclose()
