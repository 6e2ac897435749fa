"""Startup warm-up: everything a call may need is imported, built and loaded before the first call."""

from __future__ import annotations

import json
import subprocess
import sys

from ivr.speech.executor import EngineSpec, RemoteSynthesizer, RemoteTranscriber, SpeechPool
from ivr.speech.registry import SpeechRegistry, SpeechSettings

PROBE = """
import asyncio, json, sys
from ivr.speech.registry import SpeechRegistry, SpeechSettings
before = set(sys.modules)
registry = SpeechRegistry(env={"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"})
asyncio.run(registry.warm_up([SpeechSettings(stt_engine="openai", tts_engine="openai-realtime")]))
print(json.dumps({"client": registry.client._client is not None, "new": sorted(set(sys.modules) - before)}))
"""


def test_openai_modules_and_client_are_ready_before_the_first_call() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=120
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["client"] is True
    loaded = set(result["new"])
    for module in (
        "openai.resources.audio.transcriptions",
        "openai.resources.realtime",
        "ivr.speech.openai_realtime",
        "ivr.speech.openai_http",
    ):
        assert module in loaded, module


async def test_offline_engines_go_to_the_pool_when_there_is_one() -> None:
    pool = SpeechPool([EngineSpec("stt", "sim-text")], processes=1)  # not started: nothing is sent
    registry = SpeechRegistry(pool=pool)
    assert isinstance(registry.transcriber("offline"), RemoteTranscriber)
    synth = registry.synthesizer("offline")
    assert isinstance(synth, RemoteSynthesizer)
    assert synth.identity().engine == "offline"
    assert not isinstance(SpeechRegistry().transcriber("offline"), RemoteTranscriber)


async def test_warm_up_rejects_an_unknown_engine_at_startup() -> None:
    import pytest

    from ivr.speech.errors import ProviderConfigError

    with pytest.raises(ProviderConfigError, match="unknown speech-to-text engine"):
        await SpeechRegistry().warm_up([SpeechSettings(stt_engine="nope", tts_engine="sim-text")])
