"""OpenAI speech over HTTP: ``/audio/transcriptions`` (STT) and the legacy ``/audio/speech`` (TTS).

Transcription uploads the utterance as ``("utterance.wav", bytes, "audio/wav")`` at the
call rate (8 or 16 kHz; the API resamples). ``gpt-transcribe`` is the default model;
``whisper-1`` and ``gpt-4o*-transcribe`` are announced to shut down on 2027-02-26. With
``stream=True`` the answer is server-sent ``transcript.text.delta`` events and a final
``transcript.text.done``; a model that ignores ``stream`` answers plain JSON, and a
stream may end without ``done``: both are handled.

``/audio/speech`` (``tts-1``, ``tts-1-hd``, ``gpt-4o-mini-tts*``) is **legacy: its models
are announced to shut down on 2027-01-06**; new setups should use the Realtime engine.
It is asked for ``response_format="pcm"`` (raw 24 kHz s16le mono), streamed with
``iter_bytes`` and resampled to the call rate as it arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import openai

from ivr.media.framing import BytesLike
from ivr.media.resample import ResampleStream
from ivr.media.wav import wav_bytes
from ivr.speech.base import Synthesizer, Transcriber, Transcript, VoiceIdentity
from ivr.speech.errors import BadResponseError, StreamInterruptedError
from ivr.speech.openai_client import OpenAIClientSource
from ivr.speech.retry import DEFAULT_POLICY, RetryPolicy, call_with_retry, classify

DEFAULT_TRANSCRIBE_MODEL = "gpt-transcribe"
DEFAULT_SPEECH_MODEL = "gpt-4o-mini-tts"
DEFAULT_SPEECH_VOICE = "marin"
SPEECH_RATE = 24000
# Models that accept `include=["logprobs"]` (and so give a confidence).
_LOGPROB_MODELS = frozenset(
    {"gpt-4o-transcribe", "gpt-4o-mini-transcribe", "gpt-4o-mini-transcribe-2025-12-15"}
)
# Models that take `keywords` (expected phrases); others get them in `prompt`.
_KEYWORD_MODELS = ("gpt-transcribe",)
# /audio/speech models that take `instructions`.
_INSTRUCTION_MODELS = ("gpt-4o-mini-tts",)


def confidence_from_logprobs(logprobs: Sequence[Any] | None) -> float | None:
    """Geometric-mean token probability in [0, 1] from a list of ``{logprob: float}`` items."""
    if not logprobs:
        return None
    values = []
    for item in logprobs:
        lp = item.get("logprob") if isinstance(item, Mapping) else getattr(item, "logprob", None)
        if isinstance(lp, int | float) and math.isfinite(lp):
            values.append(float(lp))
    if not values:
        return None
    return max(0.0, min(1.0, math.exp(sum(values) / len(values))))


def _hint_prompt(hints: Sequence[str]) -> str:
    return "Expected answers: " + "; ".join(h.strip() for h in hints if h.strip())


class OpenAITranscriber(Transcriber):
    """``/audio/transcriptions`` with the shared client; safe to share between calls."""

    engine = "openai"

    def __init__(
        self,
        client: OpenAIClientSource,
        *,
        model: str = DEFAULT_TRANSCRIBE_MODEL,
        stream: bool = True,
        language: str | None = None,
        policy: RetryPolicy = DEFAULT_POLICY,
    ) -> None:
        self.client = client
        self.model = model
        self.stream = stream
        self.language = language
        self.policy = policy

    def _params(
        self, pcm: BytesLike, rate: int, hints: Sequence[str], language: str | None
    ) -> dict[str, Any]:
        params: dict[str, Any] = {
            "file": ("utterance.wav", wav_bytes(pcm, rate), "audio/wav"),
            "model": self.model,
        }
        lang = language or self.language
        if lang:
            params["language"] = lang
        clean = [h.strip() for h in hints if h.strip()]
        if clean:
            if self.model.startswith(_KEYWORD_MODELS):
                params["keywords"] = clean
            else:
                params["prompt"] = _hint_prompt(clean)
        if self.model in _LOGPROB_MODELS:
            params["include"] = ["logprobs"]
        return params

    async def transcribe(
        self,
        pcm: BytesLike,
        *,
        rate: int,
        hints: Sequence[str] = (),
        language: str | None = None,
    ) -> Transcript:
        final: Transcript | None = None
        async for t in self._run(bytes(pcm), rate, hints, language):
            final = t
        assert final is not None
        assert final.is_final
        return final

    async def transcribe_stream(
        self,
        frames: AsyncIterable[BytesLike],
        *,
        rate: int,
        hints: Sequence[str] = (),
        language: str | None = None,
    ) -> AsyncGenerator[Transcript, None]:
        buf = bytearray()
        async for frame in frames:
            buf += frame
        async for t in self._run(bytes(buf), rate, hints, language):
            yield t

    async def _run(
        self, pcm: bytes, rate: int, hints: Sequence[str], language: str | None
    ) -> AsyncGenerator[Transcript, None]:
        params = self._params(pcm, rate, hints, language)
        if not self.stream:
            yield await call_with_retry(
                lambda left: self._plain(params, left),
                engine=self.engine,
                policy=self.policy,
                what="transcription",
            )
            return
        opened = await call_with_retry(
            lambda left: self._open_stream(params, left),
            engine=self.engine,
            policy=self.policy,
            what="transcription",
        )
        async with contextlib.aclosing(opened) as events:
            async for t in events:
                yield t

    async def _plain(self, params: dict[str, Any], left: float) -> Transcript:
        client = self.client.get()
        raw = await client.audio.transcriptions.with_raw_response.create(**params, timeout=left)
        _check_type(raw.headers.get("content-type", ""), ("json",), self.engine)
        result = raw.parse()
        text = getattr(result, "text", None)
        if not isinstance(text, str):
            raise BadResponseError("transcription answer has no text", engine=self.engine)
        return Transcript(text.strip(), confidence_from_logprobs(getattr(result, "logprobs", None)), True)

    async def _open_stream(self, params: dict[str, Any], left: float) -> _TranscriptStream:
        """Send the request and read up to the first event; retried as a whole until then."""
        client = self.client.get()
        stream = await client.audio.transcriptions.create(**params, stream=True, timeout=left)
        try:
            ctype = stream.response.headers.get("content-type", "")
            _check_type(ctype, ("json", "event-stream"), self.engine)
            if "json" in ctype:
                # The model ignored `stream`: a plain JSON answer, which the SDK would yield as no events.
                body = await stream.response.aread()
                await stream.close()
                return _TranscriptStream.from_json(body, self.engine)
            it = stream.__aiter__()
            try:
                first = await anext(it)
            except StopAsyncIteration:
                raise BadResponseError(
                    "the transcription stream ended with no transcript events", engine=self.engine
                ) from None
            return _TranscriptStream(self.engine, stream, it, first, self.policy.stall_timeout)
        except BaseException:
            await stream.close()
            raise


def _check_type(content_type: str, wanted: tuple[str, ...], engine: str) -> None:
    """A 200 that is not a transcript (a proxy's HTML page) is a provider error, never silence."""
    if not any(w in content_type for w in wanted):
        shown = content_type.split(";")[0].strip() or "no content type"
        raise BadResponseError(f"transcription answer is {shown}, not a transcript", engine=engine)


_ENCODED_AUDIO = frozenset(
    {
        "audio/mpeg",
        "audio/mp3",
        "audio/wav",
        "audio/x-wav",
        "audio/wave",
        "audio/ogg",
        "audio/opus",
        "audio/aac",
        "audio/flac",
        "audio/webm",
        "audio/mp4",
    }
)


def _check_pcm(content_type: str, engine: str) -> None:
    """A 200 that is not raw PCM (an error page, JSON, an encoded file) is a provider error, not audio:
    played as PCM it would be noise, or nothing at all."""
    ctype = content_type.split(";")[0].strip().lower()
    if "json" in ctype or ctype.startswith("text/") or ctype in _ENCODED_AUDIO:
        raise BadResponseError(f"expected PCM audio (raw s16le), got {ctype}", engine=engine)


@dataclass(slots=True)
class _Done:
    text: str
    confidence: float | None


class _TranscriptStream:
    """Iterates partial transcripts after the first event; one final transcript at the end."""

    def __init__(
        self,
        engine: str,
        stream: openai.AsyncStream[Any] | None,
        it: AsyncIterator[Any] | None,
        first: Any,
        stall_timeout: float,
        done: _Done | None = None,
    ) -> None:
        self.engine = engine
        self._stream = stream
        self._it = it
        self._first = first
        self._stall = stall_timeout
        self._done = done

    @classmethod
    def from_json(cls, body: bytes, engine: str) -> _TranscriptStream:
        try:
            data = json.loads(body)
        except ValueError:
            raise BadResponseError("transcription answer is not JSON", engine=engine) from None
        text = data.get("text") if isinstance(data, dict) else None
        if not isinstance(text, str):
            raise BadResponseError("transcription answer has no text", engine=engine)
        done = _Done(text.strip(), confidence_from_logprobs(data.get("logprobs")))
        return cls(engine, None, None, None, 0.0, done)

    async def __aiter__(self) -> AsyncGenerator[Transcript, None]:
        try:
            if self._done is not None:
                yield Transcript(self._done.text, self._done.confidence, True)
                return
            parts: list[str] = []
            logprobs: list[Any] = []
            event = self._first
            assert self._it is not None
            while event is not None:
                kind = getattr(event, "type", None)
                if kind == "transcript.text.delta":
                    delta = getattr(event, "delta", "") or ""
                    parts.append(delta)
                    logprobs.extend(getattr(event, "logprobs", None) or ())
                    yield Transcript("".join(parts).strip(), None, False)
                elif kind == "transcript.text.done":
                    text = getattr(event, "text", None)
                    final = text if isinstance(text, str) else "".join(parts)
                    lp = getattr(event, "logprobs", None) or logprobs
                    yield Transcript(final.strip(), confidence_from_logprobs(lp), True)
                    return
                try:
                    async with asyncio.timeout(self._stall):
                        event = await anext(self._it)
                except StopAsyncIteration:
                    event = None
                except asyncio.CancelledError:
                    raise
                except Exception as e:
                    if classify(e, engine=self.engine) is None:
                        raise
                    raise StreamInterruptedError(
                        f"transcription stream broke after {len(parts)} deltas ({type(e).__name__})",
                        engine=self.engine,
                    ) from None
            # No `done` event: the deltas are all we get.
            yield Transcript("".join(parts).strip(), confidence_from_logprobs(logprobs), True)
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            await stream.close()


class OpenAISpeechSynthesizer(Synthesizer):
    """Legacy ``/audio/speech`` TTS (shuts down 2027-01-06), streamed and resampled to the call rate."""

    engine = "openai-speech"

    def __init__(
        self,
        client: OpenAIClientSource,
        *,
        model: str = DEFAULT_SPEECH_MODEL,
        voice: str = DEFAULT_SPEECH_VOICE,
        instructions: str | None = None,
        policy: RetryPolicy = DEFAULT_POLICY,
        read_size: int = 960,
    ) -> None:
        self.client = client
        self.model = model
        self.voice = voice
        self.instructions = instructions
        self.policy = policy
        self.read_size = read_size

    def identity(self, *, voice: str | None = None, instructions: str | None = None) -> VoiceIdentity:
        instr = instructions if instructions is not None else (self.instructions or "")
        if not self.model.startswith(_INSTRUCTION_MODELS):
            instr = ""
        return VoiceIdentity(self.engine, self.model, voice or self.voice, instr)

    async def synthesize(
        self,
        text: str,
        *,
        rate: int,
        voice: str | None = None,
        instructions: str | None = None,
    ) -> AsyncGenerator[bytes, None]:
        ident = self.identity(voice=voice, instructions=instructions)
        params: dict[str, Any] = {
            "model": self.model,
            "voice": ident.voice,
            "input": text,
            "response_format": "pcm",
        }
        if ident.instructions:
            params["instructions"] = ident.instructions
        resampler = ResampleStream(SPEECH_RATE, rate)
        async with contextlib.AsyncExitStack() as stack:

            async def attempt(left: float) -> tuple[AsyncIterator[bytes], bytes]:
                client = self.client.get()
                inner = contextlib.AsyncExitStack()
                try:
                    cm = client.audio.speech.with_streaming_response.create(**params, timeout=left)
                    response = await inner.enter_async_context(cm)
                    _check_pcm(response.headers.get("content-type", ""), self.engine)
                    it = response.iter_bytes(self.read_size).__aiter__()
                    try:
                        first = await anext(it)
                    except StopAsyncIteration:
                        raise BadResponseError(
                            "the speech response had no audio", engine=self.engine
                        ) from None
                except BaseException:
                    await inner.aclose()
                    raise
                stack.push_async_callback(inner.aclose)
                return it, first

            it, first = await call_with_retry(attempt, engine=self.engine, policy=self.policy, what="speech")
            received = len(first)
            for frame in resampler.push(first):
                yield frame
            while True:
                try:
                    async with asyncio.timeout(self.policy.stall_timeout):
                        chunk = await anext(it)
                except StopAsyncIteration:
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as e:
                    if classify(e, engine=self.engine) is None:
                        raise
                    raise StreamInterruptedError(
                        f"speech stream broke after {received} bytes of audio ({type(e).__name__}); not replayed",
                        engine=self.engine,
                    ) from None
                received += len(chunk)
                for frame in resampler.push(chunk):
                    yield frame
            for frame in resampler.flush():
                yield frame
