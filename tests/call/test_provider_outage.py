"""A speech provider outage in the middle of a call follows the flow's error path (no dead air)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import pytest

from ivr.call.ari_app import AriApp
from ivr.flow.model import FlowSettings
from ivr.media.framing import BytesLike
from ivr.speech.base import Transcript
from ivr.speech.errors import ProviderError, TransientProviderError
from ivr.speech.registry import CallSpeech
from ivr.speech.simulated import TextTranscriber, ToneSynthesizer

from .conftest import DATA, close_stack, make_stack

pytestmark = pytest.mark.virtual_time


class FlakyTts(ToneSynthesizer):
    """Fails (after retries, as the retry layer reports it) for prompts containing ``word``."""

    def __init__(self, word: str) -> None:
        super().__init__(ms_per_char=4, min_ms=100)
        self.word = word

    async def synthesize(
        self, text: str, *, rate: int, voice: str | None = None, instructions: str | None = None
    ) -> AsyncIterator[bytes]:
        if self.word in text:
            raise TransientProviderError(
                "503 from the TTS provider after 4 attempts", engine="test", status=503
            )
        async for frame in super().synthesize(text, rate=rate, voice=voice, instructions=instructions):
            yield frame


class DownStt(TextTranscriber):
    async def transcribe(
        self, pcm: BytesLike, *, rate: int, hints: Sequence[str] = (), language: str | None = None
    ) -> Transcript:
        raise ProviderError("connection refused", engine="test")


@pytest.mark.parametrize("broken", ["tts", "stt"])
async def test_outage_leads_to_the_error_step(broken: str) -> None:
    s = await make_stack(DATA, "menu")
    app: AriApp = s.app

    def speech(settings: FlowSettings, rate: int) -> CallSpeech:
        if broken == "tts":
            return CallSpeech(TextTranscriber(), FlakyTts("it is"))
        return CallSpeech(DownStt(), ToneSynthesizer(ms_per_char=4, min_ms=100))

    app.speech = speech
    try:
        caller = await s.sim.place_call(args=["flow=menu"])
        leg = await s.leg(caller.id)
        await leg.wait_heard("Say sales")
        if broken == "tts":
            await s.sim.press_dtmf(caller.id, "1")  # "Sales it is." cannot be synthesised
        else:
            await leg.say("sales")  # heard, but the transcriber is down
        await leg.wait_heard("Something went wrong", timeout=10)
        await s.wait_ended()
        [report] = app.reports
        assert "sorry" in report.path
        assert report.provider_errors == [broken]
        assert report.errors, "the failure is recorded on the call"
        s.assert_clean()
    finally:
        await close_stack(s)
