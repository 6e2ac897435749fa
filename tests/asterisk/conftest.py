"""Fixtures of the real-Asterisk suite: caller utterances spoken by the offline voice."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest

UTTERANCES = ("sales", "support please")


@pytest.fixture(scope="session")
def utterances() -> Mapping[str, bytes]:
    """What the suite's callers say, spoken by the offline piper voice at 8 kHz (a narrowband phone),
    as s16le PCM with the voice's own leading and trailing silence."""
    pytest.importorskip("piper", reason="the 'offline' extra is not installed (pip install -e '.[offline]')")
    from ivr.speech.offline import PiperSynthesizer

    async def speak(text: str) -> bytes:
        voice = PiperSynthesizer()
        return b"".join([chunk async for chunk in voice.synthesize(text, rate=8000)])

    return {text: asyncio.run(speak(text)) for text in UTTERANCES}
