"""Smart Turn: Whisper log-mel features against reference values, and the real model on piper speech."""

import asyncio

import numpy as np
import pytest

from ivr.media import smart_turn as st
from ivr.media.models import ModelUnavailable
from ivr.media.smart_turn import SmartTurnModel, TurnModelExecutor, last_seconds, log_mel

from .models import smart_turn_model


@pytest.fixture(scope="module")
def model():
    return smart_turn_model()


def test_features_match_the_whisper_extractor():
    """Reference values from transformers' WhisperFeatureExtractor maths (do_normalize, 8 s, 16 kHz)."""
    t = np.arange(16000 * 2) / 16000
    x = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 2500 * t)).astype(np.float32)
    f = log_mel(x)
    assert f.shape == (80, 800)
    assert f.dtype == np.float32
    assert float(f.mean()) == pytest.approx(-0.14897813, abs=1e-5)
    for (i, j), want in {
        (0, 0): 1.359365701675415,
        (10, 50): 1.7135851383209229,
        (40, 100): -0.19694887101650238,
        (20, 400): -0.19694887101650238,
    }.items():
        assert float(f[i, j]) == pytest.approx(want, abs=1e-5)
    assert float(f.max()) == pytest.approx(1.8030511, abs=1e-5)
    assert int(np.argmax(f[:, 100])) == 11  # the 440 Hz band is the strongest


def test_features_clip_the_dynamic_range_and_pad_at_the_end():
    f = log_mel(np.random.default_rng(2).normal(0, 0.1, 8000))
    assert float(f.max() - f.min()) == pytest.approx(2.0, abs=1e-5)  # 8 log10 units, scaled by 1/4
    pad = f[:, 60:]  # after 0.5 s of audio comes padding: constant in time, band by band
    assert np.allclose(pad, pad[:, :1])


def test_last_seconds_keeps_the_end_and_pads_the_front():
    short = (np.ones(8000, dtype="<i2") * 1000).tobytes()
    x = last_seconds(short, 8000)  # 1 s at 8 kHz -> 16 kHz, front-padded to 8 s
    assert x.shape == (128000,)
    assert np.all(x[:100000] == 0)
    assert abs(float(x[-8000]) - 1000 / 32768) < 0.01
    long = np.arange(16000 * 10, dtype=np.int64) % 30000
    x = last_seconds(long.astype("<i2").tobytes(), 16000)
    assert x.shape == (128000,)
    assert float(x[-1]) == pytest.approx(float(long[-1]) / 32768, abs=1e-6)


def speak(text: str, rate: int) -> bytes:
    pytest.importorskip("piper", reason="the 'offline' extra is not installed")
    from ivr.speech.offline import PiperSynthesizer

    async def go() -> bytes:
        return b"".join([f async for f in PiperSynthesizer().synthesize(text, rate=rate)])

    pcm = asyncio.run(go())
    x = np.frombuffer(pcm, "<i2")
    loud = np.nonzero(np.abs(x) > 300)[0]
    return pcm[: (int(loud[-1]) + 1) * 2]  # cut at the last word: the pause is added by the test


@pytest.mark.parametrize("rate", [8000, 16000])
def test_model_hears_a_finished_answer_and_an_unfinished_one(model, rate):
    pause = bytes(2 * rate // 5)  # 200 ms
    done = model.probability(speak("I would like a large pizza, please.", rate) + pause, rate)
    hesitating = model.probability(speak("I'd like the, uhm", rate) + pause, rate)
    assert done > 0.5
    assert hesitating < 0.5


def test_executor_runs_checks_off_the_caller_thread(model):
    ex = TurnModelExecutor(model)
    try:
        fut = ex.submit(bytes(16000), 8000)
        p = fut.result(timeout=60)
        assert 0.0 <= p <= 1.0
    finally:
        ex.close()


def test_missing_package_says_which_extra(monkeypatch):
    monkeypatch.setattr(st, "MODEL_FILES", (("no-such-dist-ivr", "x.onnx"),))
    with pytest.raises(ModelUnavailable, match=r"pip install 'asterisk-ivr\[turn\]'"):
        SmartTurnModel()
