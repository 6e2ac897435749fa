"""Engines per language: a call opens another language's engines when it first speaks it, reuses them,
and closes them all at the end; a flow with one language gets the plain engines."""

from __future__ import annotations

from ivr.call.languages import SpeechByLanguage, call_speech
from ivr.flow.model import FlowSettings
from ivr.speech.registry import CallSpeech
from ivr.speech.simulated import TextTranscriber, ToneSynthesizer


class Factory:
    def __init__(self) -> None:
        self.opened: list[tuple[str, str | None, str | None]] = []
        self.closed = 0

    def __call__(self, settings: FlowSettings, rate: int) -> CallSpeech:
        self.opened.append((settings.language, settings.tts, settings.voice))
        factory = self

        class Speech(CallSpeech):
            async def aclose(self) -> None:
                factory.closed += 1

        return Speech(TextTranscriber(), ToneSynthesizer())


async def test_each_language_gets_its_engines_once() -> None:
    settings = FlowSettings.model_validate(
        {"language": "en-US", "tts": "offline", "languages": {"fr-FR": {"tts": "openai", "voice": "nova"}}}
    )
    factory = Factory()
    speech = call_speech(factory, settings, 8000)
    assert isinstance(speech, SpeechByLanguage)
    english = speech.synthesizer
    speech.use("fr-FR")
    french = speech.synthesizer
    assert french is not english
    speech.use("en-US")
    assert speech.synthesizer is english
    speech.use("fr-FR")
    assert speech.synthesizer is french
    assert factory.opened == [("en-US", "offline", None), ("fr-FR", "openai", "nova")]
    await speech.aclose()
    assert factory.closed == 2


async def test_a_language_with_the_same_engines_shares_them() -> None:
    settings = FlowSettings.model_validate({"language": "en-US", "languages": {"fr-FR": {"voice": "nova"}}})
    factory = Factory()
    speech = call_speech(factory, settings, 8000)
    speech.use("fr-FR")  # type: ignore[attr-defined]
    assert len(factory.opened) == 1  # the voice is chosen per prompt; the engines are the same


def test_one_language_is_the_plain_engines() -> None:
    factory = Factory()
    speech = call_speech(factory, FlowSettings(), 8000)
    assert not isinstance(speech, SpeechByLanguage)
