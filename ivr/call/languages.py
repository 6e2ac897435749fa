"""A call's speech engines per language: a flow may speak English offline and French through OpenAI.

:class:`SpeechByLanguage` is the call's :class:`~ivr.call.ports.CallSpeech`: it opens the engines of the
call's first language at once and another language's engines the first time the call speaks or listens
in it (the flow's ``settings.languages`` entry over its settings), reusing them afterwards, and closes
them all at the end. The runtime tells it the language of each prompt and question (:meth:`use`).
"""

from __future__ import annotations

from ivr.call.ports import CallSpeech, SpeechFactory
from ivr.flow.model import FlowSettings
from ivr.speech.base import Synthesizer, Transcriber


class SpeechByLanguage:
    def __init__(self, factory: SpeechFactory, settings: FlowSettings, rate: int) -> None:
        self.factory = factory
        self.settings = settings
        self.rate = rate
        self.language = settings.language
        self._engines: dict[tuple[str | None, ...], CallSpeech] = {}
        first = self._open(settings.language)
        self.transcriber: Transcriber = first.transcriber
        self.synthesizer: Synthesizer = first.synthesizer

    def _key(self, settings: FlowSettings) -> tuple[str | None, ...]:
        return (settings.stt, settings.stt_model, settings.tts, settings.tts_model, settings.tts_instructions)

    def _open(self, language: str) -> CallSpeech:
        settings = self.settings.for_language(language)
        key = self._key(settings)
        found = self._engines.get(key)
        if found is None:
            found = self.factory(settings, self.rate)
            self._engines[key] = found
        return found

    def use(self, language: str) -> None:
        """Speak and listen in ``language`` from now on (engines opened on first use, then kept)."""
        if language != self.language:
            self.language = language
            engines = self._open(language)
            self.transcriber, self.synthesizer = engines.transcriber, engines.synthesizer

    async def aclose(self) -> None:
        for speech in self._engines.values():
            await speech.aclose()


def call_speech(factory: SpeechFactory, settings: FlowSettings, rate: int) -> CallSpeech:
    """The engines of one call: per language when the flow speaks several, else just the flow's."""
    if not settings.languages:
        return factory(settings, rate)
    return SpeechByLanguage(factory, settings, rate)
