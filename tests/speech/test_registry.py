"""Engine selection by name; the key only from the environment, the client created lazily."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.speech.cache import CachingSynthesizer
from ivr.speech.errors import ProviderConfigError
from ivr.speech.openai_http import OpenAISpeechSynthesizer, OpenAITranscriber
from ivr.speech.openai_realtime import RealtimeSynthesizer, RealtimeTranscriber
from ivr.speech.openai_realtime_session import RealtimeSession
from ivr.speech.registry import SpeechRegistry, SpeechSettings
from tests.fakes.openai_server import FakeOpenAI


def test_unknown_engines_are_rejected_with_the_choices():
    with pytest.raises(ProviderConfigError, match="choose one of openai, openai-realtime, offline"):
        SpeechRegistry.check(SpeechSettings(stt_engine="watson"))
    with pytest.raises(ProviderConfigError, match="openai-speech"):
        SpeechRegistry.check(SpeechSettings(tts_engine="polly"))


def test_no_key_needed_until_an_openai_engine_is_used():
    reg = SpeechRegistry(env={})
    call = reg.open_call(SpeechSettings(stt_engine="openai", tts_engine="openai-speech"), rate=8000)
    assert isinstance(call.transcriber, OpenAITranscriber)
    assert isinstance(call.synthesizer, OpenAISpeechSynthesizer)
    with pytest.raises(ProviderConfigError, match="OPENAI_API_KEY is not set"):
        reg.client.get()


def test_shared_engines_are_reused_and_realtime_is_per_call(tmp_path: Path):
    reg = SpeechRegistry(env={"OPENAI_API_KEY": "sk-x"}, cache_dir=tmp_path)
    settings = SpeechSettings(stt_engine="openai-realtime", tts_engine="openai", voice="cedar")
    a = reg.open_call(settings, rate=8000)
    b = reg.open_call(settings, rate=8000)
    assert isinstance(a.synthesizer, CachingSynthesizer)
    assert isinstance(b.synthesizer, CachingSynthesizer)
    sa, sb = a.synthesizer.inner, b.synthesizer.inner
    assert isinstance(sa, RealtimeSynthesizer)
    assert isinstance(sb, RealtimeSynthesizer)
    assert isinstance(a.transcriber, RealtimeTranscriber)
    assert a.transcriber.session is sa.session  # STT and TTS share the call's socket
    assert sa.session is not sb.session
    assert sa.session.voice == "cedar"
    assert reg.transcriber("openai") is reg.transcriber("openai")
    with pytest.raises(ProviderConfigError, match="per call"):
        reg.transcriber("openai-realtime")


async def test_end_to_end_through_the_registry(fake: FakeOpenAI, env, tmp_path: Path):
    reg = SpeechRegistry(env=env, cache_dir=tmp_path)
    call = reg.open_call(SpeechSettings(stt_engine="openai", tts_engine="openai-speech"), rate=16000)
    try:
        frames = [f async for f in call.synthesizer.synthesize("Hello", rate=16000)]
        again = [f async for f in call.synthesizer.synthesize("Hello", rate=16000)]
        assert frames == again
        t = await call.transcriber.transcribe(b"".join(frames), rate=16000)
        assert t.text == "hello world"
        assert [r.path for r in fake.requests] == ["speech", "transcriptions"]  # second prompt was cached
    finally:
        await call.aclose()
        await reg.aclose()


async def test_realtime_call_closes_its_socket(fake: FakeOpenAI, env):
    pytest.importorskip("websockets", reason="the 'realtime' extra (openai[realtime]) is not installed")
    reg = SpeechRegistry(env=env)
    call = reg.open_call(
        SpeechSettings(stt_engine="openai-realtime", tts_engine="openai-realtime"), rate=8000
    )
    assert [f async for f in call.synthesizer.synthesize("Hi", rate=8000)]
    assert isinstance(call.transcriber, RealtimeTranscriber)
    session = call.transcriber.session
    assert isinstance(session, RealtimeSession)
    states = [session.connected]
    await call.aclose()
    states.append(session.connected)
    assert states == [True, False]
    await reg.aclose()
