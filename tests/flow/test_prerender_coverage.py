"""Every cacheable part a call of a shipped flow can play is in what ``ivr prerender`` renders (same text,
same language), found by walking each flow through silences, misunderstandings, keys and failures."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from ivr.flow.actions import Play
from ivr.flow.engine import FlowEngine
from ivr.flow.events import (
    CallStarted,
    ClassificationResult,
    DtmfReceived,
    Event,
    NoInput,
    PromptFinished,
    RecordingFinished,
    SpeechRecognized,
    TransferFailed,
    WebhookFailed,
)
from ivr.flow.loader import load_library
from ivr.flow.prompts import fixed_texts

from .helpers import FLOWS_DIR

FLOWS = sorted(p for p in FLOWS_DIR.glob("*.yaml"))
ANSWERS: list[Event] = [NoInput(), SpeechRecognized("zebra crossing"), DtmfReceived("1"), DtmfReceived("2")]


def walk(path: Path, choice: int, language: str | None) -> set[tuple[str, str]]:
    engine = FlowEngine(
        load_library(path),
        env={"BANK_API_TOKEN": "t", "PIZZA_API_KEY": "k", "CLINIC_TOKEN": "t", "OUTAGE_API_TOKEN": "t"},
    )
    answers = itertools.cycle(ANSWERS[choice:] + ANSWERS[:choice])
    actions = engine.handle(CallStarted(call_id="c", language=language), now=1_796_000_000.0)
    parts: set[tuple[str, str]] = set()
    for _ in range(200):
        for action in actions:
            if isinstance(action, Play) and action.text is not None:
                parts |= {(p.text, action.language) for p in action.segments if p.cacheable}
        if engine.finished:
            break
        waits: dict[str, Event] = {
            "prompt": PromptFinished(),
            "webhook": WebhookFailed("offline"),
            "transfer": TransferFailed("busy"),
            "record": RecordingFinished(1000, "silence", "/tmp/x.wav"),
            "classify": ClassificationResult(None),
        }
        event = waits.get(engine.waiting_for) or next(answers)
        actions = engine.handle(event)
    return parts


@pytest.mark.parametrize("path", FLOWS, ids=lambda p: p.stem)
def test_every_cacheable_part_is_prerendered(path: Path) -> None:
    library = load_library(path)
    rendered = {(t.text, t.language) for flow in library.flows.values() for t in fixed_texts(flow)}
    languages = [None, *library.main.settings.languages]
    played = set().union(*(walk(path, i, lang) for i in range(len(ANSWERS)) for lang in languages))
    assert played, "the walk played nothing"
    assert played - rendered == set()
