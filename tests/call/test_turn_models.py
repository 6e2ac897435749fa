"""The turn-taking models load at startup, before the process says it is ready (never on a live call),
with one INFO line each saying what runs; a process without them falls back to energy and silence."""

from __future__ import annotations

import asyncio
import logging

import pytest

from ivr.call.turn_models import TurnModels
from ivr.media.vad import EnergyVad
from ivr.sim.ari_server import SimAsterisk
from ivr.workers.process import serve

from .test_ivr_run import settings_for


async def test_serve_loads_the_models_before_it_is_ready(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with SimAsterisk(username="ivr", password="pw") as sim:
        stop = asyncio.Event()
        ready = asyncio.Event()
        task = asyncio.create_task(serve(settings_for(sim), stop=stop, ready=lambda info: ready.set()))
        await asyncio.wait_for(ready.wait(), 20)
        stop.set()
        assert await asyncio.wait_for(task, 10) == 0
    lines = [r.getMessage() for r in caplog.records]
    vad = next(i for i, m in enumerate(lines) if m.startswith("voice activity detection: "))
    turn = next(i for i, m in enumerate(lines) if m.startswith("end of turn: "))
    ready_at = next(i for i, m in enumerate(lines) if m.startswith("ready: "))
    assert vad < ready_at
    assert turn < ready_at
    assert sum(m.startswith("voice activity detection: ") for m in lines) == 1, "one line says which VAD"


def test_the_models_and_their_fallbacks(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    models = TurnModels.load(vad="energy", turn=False)
    try:
        assert models.vad_kind == "energy"
        assert models.turn is None
        assert isinstance(models.vad_for(8000), EnergyVad)
        assert "end of turn: silence only" in caplog.text
    finally:
        models.close()


def test_text_carriers_get_the_energy_vad_whatever_runs() -> None:
    models = TurnModels.load(turn=False, batched=False)
    try:
        assert isinstance(models.vad_for(16000, speech_audio=False), EnergyVad)
    finally:
        models.close()
