"""A call's speech engines: the flow's choices, else the process defaults (``IVR_STT`` / ``IVR_TTS``)."""

from __future__ import annotations

from ivr.call.ports import CallSpeech, SpeechFactory
from ivr.flow.model import FlowSettings
from ivr.speech.registry import SpeechRegistry, SpeechSettings


def speech_settings(flow: FlowSettings, *, default_stt: str, default_tts: str) -> SpeechSettings:
    return SpeechSettings(
        stt_engine=flow.stt or default_stt,
        tts_engine=flow.tts or default_tts,
        stt_model=flow.stt_model,
        tts_model=flow.tts_model,
        voice=flow.voice,
        language=flow.language.split("-")[0] if flow.language else None,
        instructions=flow.tts_instructions,
    )


def registry_factory(registry: SpeechRegistry, *, default_stt: str, default_tts: str) -> SpeechFactory:
    def factory(flow: FlowSettings, rate: int) -> CallSpeech:
        settings = speech_settings(flow, default_stt=default_stt, default_tts=default_tts)
        return registry.open_call(settings, rate=rate)

    return factory
