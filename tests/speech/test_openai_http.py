"""OpenAI HTTP STT/TTS and the retry layer, against the fake server with the real AsyncOpenAI client."""

from __future__ import annotations

import contextlib
import time

import numpy as np
import pytest

from ivr.media.framing import frame_bytes
from ivr.media.wav import read_wav
from ivr.speech.errors import (
    BadResponseError,
    DeadlineExceededError,
    ProviderAuthError,
    ProviderConfigError,
    ProviderError,
    QuotaExceededError,
    StreamInterruptedError,
    TransientProviderError,
)
from ivr.speech.openai_client import OpenAIClientSource
from ivr.speech.openai_http import OpenAISpeechSynthesizer, OpenAITranscriber
from ivr.speech.retry import RetryPolicy
from tests.fakes.openai_server import API_KEY, Audio, Body, Fail, FakeOpenAI, Hang, Text, tone_pcm

RATES = [8000, 16000]
FAST = RetryPolicy(deadline=5.0, max_attempts=4, backoff_initial=0.01, backoff_max=0.05, stall_timeout=2.0)


async def collect(synth: OpenAISpeechSynthesizer, text: str, rate: int) -> list[bytes]:
    return [f async for f in synth.synthesize(text, rate=rate)]


def dominant_hz(pcm: bytes, rate: int) -> float:
    x = np.frombuffer(pcm, "<i2").astype(np.float64)
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[int(np.argmax(spec))])


# -- text to speech -----------------------------------------------------------------


@pytest.mark.parametrize("rate", RATES)
async def test_speech_streams_frames_at_call_rate(fake: FakeOpenAI, source, rate):
    fake.speech.append(Audio(tone_pcm(1.0, 24000, freq=440.0), chunks=(1001, 7, 4800, 333)))
    synth = OpenAISpeechSynthesizer(source, policy=FAST)
    frames = await collect(synth, "Welcome to the bank.", rate)
    fb = frame_bytes(rate)
    assert all(len(f) == fb for f in frames[:-1])
    assert 0 < len(frames[-1]) <= fb
    total = sum(len(f) for f in frames) // 2
    assert abs(total - rate) <= rate // 100  # one second of audio, at the call rate
    assert abs(dominant_hz(b"".join(frames), rate) - 440.0) < 5
    req = fake.requests[-1]
    assert req.fields["response_format"] == "pcm"
    assert req.fields["input"] == "Welcome to the bank."
    assert req.auth == f"Bearer {API_KEY}"


async def test_speech_first_audio_before_the_provider_finishes(fake: FakeOpenAI, source):
    fake.speech.append(Audio(tone_pcm(2.0, 24000), chunks=(4800,), gap=0.02))
    synth = OpenAISpeechSynthesizer(source, policy=FAST)
    async with contextlib.aclosing(synth.synthesize("A long prompt", rate=8000)) as gen:
        first = await anext(gen)
        assert len(first) == 320
        assert fake.speech_finished == 0  # still streaming on the server side
        rest = [f async for f in gen]
    assert fake.speech_finished == 1
    assert abs((len(first) + sum(len(f) for f in rest)) // 2 - 16000) <= 80


async def test_speech_odd_and_tiny_chunks_do_not_shift_samples(fake: FakeOpenAI, source):
    pcm = tone_pcm(0.5, 24000, freq=1000.0)
    fake.speech.append(Audio(pcm, chunks=(1, 3, 5, 7, 999, 2)))
    synth = OpenAISpeechSynthesizer(source, policy=FAST)
    frames = await collect(synth, "odd", 8000)
    out = b"".join(frames)
    # A sample split across chunks must be rejoined: a byte shift would turn the tone into noise.
    assert abs(dominant_hz(out, 8000) - 1000.0) < 5
    x = np.frombuffer(out, "<i2").astype(np.float64)
    assert np.max(np.abs(x)) < 9000


async def test_speech_json_body_is_not_played(fake: FakeOpenAI, source):
    fake.speech.append(Audio(b'{"error": "oops"}', content_type="application/json"))
    synth = OpenAISpeechSynthesizer(source, policy=FAST)
    with pytest.raises(BadResponseError, match="expected PCM"):
        await collect(synth, "x", 8000)


async def test_speech_empty_body_is_an_error(fake: FakeOpenAI, source):
    fake.speech.append(Audio(b""))
    synth = OpenAISpeechSynthesizer(source, policy=FAST)
    with pytest.raises(BadResponseError, match="no audio"):
        await collect(synth, "x", 8000)


@pytest.mark.parametrize("status", [500, 503, 429, 408])
async def test_speech_retries_transient_then_succeeds(fake: FakeOpenAI, source, status):
    fake.speech.extend([Fail(status), Fail(status)])
    synth = OpenAISpeechSynthesizer(source, policy=FAST)
    frames = await collect(synth, "retry me", 16000)
    assert sum(len(f) for f in frames) > 0
    assert len([r for r in fake.requests if r.path == "speech"]) == 3


async def test_retry_after_is_honoured(fake: FakeOpenAI, source):
    fake.speech.append(Fail(429, code="rate_limit_exceeded", headers={"Retry-After": "1"}))
    synth = OpenAISpeechSynthesizer(source, policy=FAST)
    start = time.monotonic()
    frames = await collect(synth, "wait for it", 8000)
    assert time.monotonic() - start >= 0.95
    assert frames


async def test_retry_after_ms_is_honoured(fake: FakeOpenAI, source):
    fake.speech.append(Fail(503, headers={"retry-after-ms": "400"}))
    synth = OpenAISpeechSynthesizer(source, policy=FAST)
    start = time.monotonic()
    assert await collect(synth, "wait", 8000)
    assert time.monotonic() - start >= 0.38


async def test_retry_after_beyond_deadline_fails_at_once(fake: FakeOpenAI, source):
    fake.speech.append(Fail(429, headers={"Retry-After": "30"}))
    synth = OpenAISpeechSynthesizer(source, policy=RetryPolicy(deadline=2.0, backoff_initial=0.01))
    start = time.monotonic()
    with pytest.raises(DeadlineExceededError, match="deadline") as info:
        await collect(synth, "x", 8000)
    assert time.monotonic() - start < 1.0  # did not sleep 30 s, nor the whole deadline
    assert info.value.status == 429
    assert len(fake.requests) == 1


async def test_insufficient_quota_is_not_retried(fake: FakeOpenAI, source):
    fake.speech.append(Fail(429, code="insufficient_quota", message="You exceeded your current quota"))
    synth = OpenAISpeechSynthesizer(source, policy=FAST)
    with pytest.raises(QuotaExceededError, match="quota"):
        await collect(synth, "x", 8000)
    assert len(fake.requests) == 1


async def test_auth_failure_is_not_retried_and_hides_the_key(fake: FakeOpenAI, source):
    fake.speech.append(Fail(401, code="invalid_api_key", message=f"Incorrect API key provided: {API_KEY}"))
    synth = OpenAISpeechSynthesizer(source, policy=FAST)
    with pytest.raises(ProviderAuthError) as info:
        await collect(synth, "x", 8000)
    assert API_KEY not in str(info.value)
    assert API_KEY not in repr(info.value)
    chain: BaseException | None = info.value
    while chain is not None:
        assert API_KEY not in str(chain)
        assert API_KEY not in repr(chain)
        chain = chain.__cause__ or chain.__context__
    assert len(fake.requests) == 1


async def test_attempts_exhausted_raise_transient_error(fake: FakeOpenAI, source):
    fake.speech.extend([Fail(500)] * 5)
    synth = OpenAISpeechSynthesizer(source, policy=FAST)
    with pytest.raises(TransientProviderError) as info:
        await collect(synth, "x", 8000)
    assert info.value.attempts == 4
    assert info.value.status == 500
    assert len(fake.requests) == 4


async def test_total_deadline_exceeded(fake: FakeOpenAI, source):
    fake.speech.extend([Hang(), Hang(), Hang()])
    synth = OpenAISpeechSynthesizer(source, policy=RetryPolicy(deadline=0.6, backoff_initial=0.01))
    start = time.monotonic()
    with pytest.raises(ProviderError, match="deadline"):
        await collect(synth, "x", 8000)
    assert time.monotonic() - start < 2.0


async def test_stream_cut_midway_is_not_replayed(fake: FakeOpenAI, source):
    pcm = tone_pcm(2.0, 24000)
    fake.speech.append(Audio(pcm, chunks=(4800,), cut_after=24000, gap=0.01))
    synth = OpenAISpeechSynthesizer(source, policy=FAST)
    got: list[bytes] = []

    async def play() -> None:
        async for frame in synth.synthesize("long prompt", rate=8000):
            got.append(frame)

    with pytest.raises(StreamInterruptedError, match="not replayed"):
        await play()
    assert got  # audio had started
    assert len(fake.requests) == 1  # and nothing was requested again


async def test_stream_cut_before_audio_is_retried(fake: FakeOpenAI, source):
    fake.speech.append(Audio(tone_pcm(1.0, 24000), cut_after=0))
    synth = OpenAISpeechSynthesizer(source, policy=FAST)
    assert await collect(synth, "x", 8000)
    assert len(fake.requests) == 2


async def test_barge_in_closes_the_stream(fake: FakeOpenAI, source):
    fake.speech.append(Audio(tone_pcm(3.0, 24000), chunks=(960,), gap=0.005))
    synth = OpenAISpeechSynthesizer(source, policy=FAST)
    gen = synth.synthesize("long", rate=8000)
    async with contextlib.aclosing(gen):
        first = await anext(gen)
        assert len(first) == 320
    # the caller spoke: the generator is closed and nothing else is read  # the caller spoke: nothing else is read


async def test_missing_api_key_message():
    src = OpenAIClientSource({})
    synth = OpenAISpeechSynthesizer(src, policy=FAST)
    with pytest.raises(ProviderConfigError, match="OPENAI_API_KEY is not set"):
        await collect(synth, "x", 8000)
    tr = OpenAITranscriber(src, policy=FAST)
    with pytest.raises(ProviderConfigError, match="OPENAI_API_KEY"):
        await tr.transcribe(b"\0\0" * 800, rate=8000)


def test_client_source_repr_hides_key():
    src = OpenAIClientSource({"OPENAI_API_KEY": API_KEY})
    assert API_KEY not in repr(src)
    assert src.configured


# -- speech to text -----------------------------------------------------------------


@pytest.mark.parametrize("rate", RATES)
async def test_transcription_streaming_deltas(fake: FakeOpenAI, source, rate):
    fake.transcriptions.append(Text("my account number is four two seven"))
    tr = OpenAITranscriber(source, policy=FAST)
    pcm = tone_pcm(0.5, rate)
    results = [t async for t in tr.transcribe_stream(_frames(pcm, rate), rate=rate, hints=["yes", "no"])]
    assert [t.is_final for t in results] == [False] * 7 + [True]
    assert results[0].text == "my"
    assert results[-1].text == "my account number is four two seven"
    req = fake.requests[-1]
    assert req.fields["model"] == "gpt-transcribe"
    assert req.fields["stream"] == "true"
    assert req.fields["keywords[]"] == ["yes", "no"]
    assert req.file is not None
    name, ctype, data = req.file
    assert (name, ctype) == ("utterance.wav", "audio/wav")
    wav = read_wav(data, rate=rate, channels=1)
    assert wav.pcm == pcm


async def test_transcription_plain_json_answer_to_stream_request(fake: FakeOpenAI, source):
    fake.transcriptions.append(Text("press one", sse=False))
    tr = OpenAITranscriber(source, policy=FAST)
    t = await tr.transcribe(tone_pcm(0.3, 8000), rate=8000, language="en")
    assert (t.text, t.is_final) == ("press one", True)
    assert fake.requests[-1].fields["language"] == "en"


async def test_transcription_missing_done_uses_deltas(fake: FakeOpenAI, source):
    fake.transcriptions.append(Text("billing please", send_done=False))
    tr = OpenAITranscriber(source, policy=FAST)
    t = await tr.transcribe(tone_pcm(0.3, 16000), rate=16000)
    assert (t.text, t.is_final) == ("billing please", True)


async def test_transcription_non_streaming_with_confidence(fake: FakeOpenAI, source):
    fake.transcriptions.append(Text("yes", sse=False, logprobs=[-0.1, -0.3]))
    tr = OpenAITranscriber(source, model="gpt-4o-mini-transcribe", stream=False, policy=FAST)
    t = await tr.transcribe(tone_pcm(0.3, 8000), rate=8000, hints=["yes", "no"])
    assert t.text == "yes"
    assert t.confidence == pytest.approx(np.exp(-0.2))
    fields = fake.requests[-1].fields
    assert "stream" not in fields
    assert fields["include[]"] == ["logprobs"]
    assert fields["prompt"] == "Expected answers: yes; no"


async def test_transcription_retries_then_succeeds(fake: FakeOpenAI, source):
    fake.transcriptions.extend([Fail(502), Fail(429, headers={"retry-after-ms": "50"}), Text("ok")])
    tr = OpenAITranscriber(source, policy=FAST)
    t = await tr.transcribe(tone_pcm(0.3, 8000), rate=8000)
    assert t.text == "ok"
    assert len(fake.requests) == 3


async def test_transcription_stream_cut_after_deltas(fake: FakeOpenAI, source):
    fake.transcriptions.append(Text("one two three four", cut_after_deltas=2))
    tr = OpenAITranscriber(source, policy=FAST)
    with pytest.raises(StreamInterruptedError):
        await tr.transcribe(tone_pcm(0.3, 8000), rate=8000)
    assert len(fake.requests) == 1


async def test_transcription_quota(fake: FakeOpenAI, source):
    fake.transcriptions.append(Fail(429, code="insufficient_quota"))
    tr = OpenAITranscriber(source, policy=FAST)
    with pytest.raises(QuotaExceededError):
        await tr.transcribe(tone_pcm(0.3, 8000), rate=8000)
    assert len(fake.requests) == 1


async def _frames(pcm: bytes, rate: int):
    fb = frame_bytes(rate)
    for i in range(0, len(pcm), fb):
        yield pcm[i : i + fb]


@pytest.mark.parametrize("stream", [True, False])
async def test_transcription_html_page_is_a_provider_error_not_silence(fake: FakeOpenAI, source, stream):
    """A 200 whose body is not a transcript (a proxy's HTML page) must take the error path, never no_input."""
    fake.transcriptions.append(Body(b"<html><body>Service unavailable</body></html>"))
    tr = OpenAITranscriber(source, stream=stream, policy=FAST)
    with pytest.raises(BadResponseError, match="text/html"):
        await tr.transcribe(tone_pcm(0.3, 8000), rate=8000)


async def test_transcription_empty_event_stream_is_a_provider_error(fake: FakeOpenAI, source):
    fake.transcriptions.append(Body(b"", content_type="text/event-stream"))
    tr = OpenAITranscriber(source, policy=FAST)
    with pytest.raises(BadResponseError, match="no transcript events"):
        await tr.transcribe(tone_pcm(0.3, 8000), rate=8000)


@pytest.mark.parametrize("ctype", ["audio/mpeg", "audio/wav", "text/html; charset=utf-8"])
async def test_speech_of_another_kind_is_refused_not_played(fake: FakeOpenAI, source, ctype: str):
    """A 200 with encoded audio or a page (asked for raw PCM) would play as noise: a provider error."""
    fake.speech.append(Audio(b"\xff\xfb\x90\x64" * 500, content_type=ctype))
    synth = OpenAISpeechSynthesizer(source, policy=FAST)
    with pytest.raises(BadResponseError, match="expected PCM"):
        async for _ in synth.synthesize("Hello.", rate=8000):
            pass
    assert fake.speech_finished <= 1, "never retried: the answer is wrong, not late"
