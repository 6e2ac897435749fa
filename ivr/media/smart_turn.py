"""End-of-turn model: Smart Turn v3.x (ONNX, from the pipecat-ai wheel) and its Whisper log-mel features.

Smart Turn reads the last 8 s of the caller's audio (16 kHz) as an 80 x 800 Whisper log-mel spectrogram
and answers how likely the caller has finished their turn, judging intonation and rhythm rather than
words: "my card number is four one one two..." trailing off mid-number scores low, a falling "large."
scores high. It is asked only during a pause (see ``ivr.media.turn``), never per frame.

The features follow Whisper's extractor (as transformers' ``WhisperFeatureExtractor`` with
``do_normalize=True``, which the model was trained with): waveform normalised to zero mean and unit
variance, 25 ms Hann windows (400 samples, periodic) every 10 ms, centred with reflection padding, power
spectrum, 80 Slaney mel bands from 0 to 8 kHz, log10 with a floor, dynamic range clipped to 8 (log10
units) under the maximum, then (x + 4) / 4. numpy only: no torch, no transformers.

Cost: ~30 ms per check on one core of this machine (README, Turn-taking), so it runs on a worker
thread (``TurnModelExecutor``), never on the pacing thread; onnxruntime releases the GIL.
"""

from __future__ import annotations

import concurrent.futures
import functools
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from ivr.media.framing import BytesLike
from ivr.media.models import PackagedModel, find_packaged, onnx_session
from ivr.media.resample import resample

MODEL_FILES: Final = (("pipecat-ai", "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"),)
RATE: Final = 16000
SECONDS: Final = 8
N_FFT: Final = 400
HOP: Final = 160
N_MELS: Final = 80
N_FRAMES: Final = SECONDS * RATE // HOP  # 800

Floats = npt.NDArray[np.float64]


def _hz_to_mel(f: Floats) -> Floats:
    """Slaney mel scale: linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    mel = 3.0 * f / 200.0
    above = f >= 1000.0
    return np.where(above, 15.0 + np.log(np.maximum(f, 1e-9) / 1000.0) * (27.0 / np.log(6.4)), mel)


def _mel_to_hz(m: Floats) -> Floats:
    m = np.asarray(m, dtype=np.float64)
    hz = 200.0 * m / 3.0
    return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)), hz)


@functools.cache
def mel_filters() -> Floats:
    """(N_MELS, N_FFT // 2 + 1) triangular filters with Slaney area normalisation."""
    bins = np.linspace(0.0, RATE / 2, N_FFT // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(np.array(0.0)), _hz_to_mel(np.array(RATE / 2)), N_MELS + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - lower) / (centre - lower)
    falling = (upper - bins[None, :]) / (upper - centre)
    tri = np.maximum(0.0, np.minimum(rising, falling))
    out: Floats = tri * (2.0 / (upper - lower))
    return out


@functools.cache
def _window() -> Floats:
    n = np.arange(N_FFT)
    out: Floats = 0.5 - 0.5 * np.cos(2 * np.pi * n / N_FFT)  # periodic Hann
    return out


def log_mel(audio: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    """80 x 800 features of exactly 8 s of 16 kHz audio (shorter is padded at the end, longer cut)."""
    x = np.asarray(audio, dtype=np.float32).reshape(-1)
    n = RATE * SECONDS
    x = np.pad(x, (0, n - x.size)) if x.size < n else x[:n]
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    padded = np.pad(x.astype(np.float64), (N_FFT // 2, N_FFT // 2), mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP]
    power = np.abs(np.fft.rfft(frames * _window(), axis=-1)) ** 2  # (801, 201)
    mel = np.maximum(1e-10, power @ mel_filters().T).T  # (80, 801)
    spec = np.log10(mel)[:, :-1]
    spec = np.maximum(spec, spec.max() - 8.0)
    out: npt.NDArray[np.float32] = ((spec + 4.0) / 4.0).astype(np.float32)
    return out


def last_seconds(pcm: BytesLike, rate: int) -> npt.NDArray[np.float32]:
    """The last 8 s of an s16le utterance at 16 kHz as floats in [-1, 1), zero-padded at the front."""
    data = bytes(pcm[-(2 * rate * SECONDS) :]) if len(pcm) > 2 * rate * SECONDS else bytes(pcm)
    if len(data) & 1:
        data = data[1:]
    x = np.frombuffer(resample(data, rate, RATE), dtype="<i2").astype(np.float32) / 32768.0
    n = RATE * SECONDS
    return x[-n:] if x.size >= n else np.pad(x, (n - x.size, 0))


class SmartTurnModel:
    """The ONNX session; ``probability(pcm, rate)`` is P(the caller has finished). Thread-safe."""

    def __init__(self, path: Path | None = None, *, threads: int = 1) -> None:
        found = (
            PackagedModel(path, str(path)) if path is not None else find_packaged(MODEL_FILES, extra="turn")
        )
        self.source = found.source
        self.path = found.path
        self._session = onnx_session(found.path, threads=threads, extra="turn")
        names = [i.name for i in self._session.get_inputs()]
        if names != ["input_features"]:
            raise ValueError(f"{found.path} is not a Smart Turn v3 model (inputs {names})")

    def probability(self, pcm: BytesLike, rate: int) -> float:
        features = log_mel(last_seconds(pcm, rate))[None, :, :]
        out = self._session.run(None, {"input_features": features})[0]
        return float(np.asarray(out).reshape(-1)[0])


class TurnModelExecutor:
    """Runs end-of-turn checks on one worker thread (checks are rare: one per pause of a caller).

    ``submit`` returns a ``concurrent.futures.Future[float]``; an asyncio caller awaits it with
    ``asyncio.wrap_future``. Checks queue rather than oversubscribe the CPU. ``close()`` at shutdown.
    """

    def __init__(self, model: SmartTurnModel) -> None:
        self.model = model
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ivr-turn")

    def submit(self, pcm: bytes, rate: int) -> concurrent.futures.Future[float]:
        return self._pool.submit(self.model.probability, pcm, rate)

    @property
    def pool(self) -> concurrent.futures.ThreadPoolExecutor:
        """The worker thread (an asyncio caller uses ``loop.run_in_executor(executor.pool, ...)``)."""
        return self._pool

    def warm(self) -> float:
        """One check on silence (onnxruntime's first run allocates): at startup, not on a live call."""
        return self.submit(bytes(16000), 8000).result()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
