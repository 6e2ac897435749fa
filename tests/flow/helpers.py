"""Test helpers: build flows from YAML text and drive the engine while checking its invariants."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from ivr.flow.actions import Action, Classify, End, HttpRequest, Listen, Play, Record, Transfer
from ivr.flow.engine import FlowEngine
from ivr.flow.events import CallStarted, Event
from ivr.flow.loader import FlowLibrary
from ivr.flow.model import Flow
from ivr.flow.validate import validate_source

FLOWS_DIR = Path(__file__).resolve().parents[2] / "flows"
DATA_DIR = Path(__file__).resolve().parent / "data"

WAIT_ACTIONS: dict[str, tuple[type, ...]] = {
    "prompt": (Play,),
    "input": (Listen,),
    "classify": (Classify,),
    "webhook": (HttpRequest,),
    "transfer": (Transfer,),
    "record": (Record,),
}


def flow_from_yaml(text: str) -> Flow:
    report = validate_source(textwrap.dedent(text), "<test>")
    assert report.flow is not None, "\n".join(str(i) for i in report.issues)
    return report.flow


def check_invariants(
    engine: FlowEngine, actions: list[Action], last_wait: list[Action], *, was_finished: bool = False
) -> None:
    """After any event the engine has ended or waits for the answer to an action it emitted."""
    if was_finished:
        assert actions == []
        assert engine.finished
        return
    ends = [a for a in actions if isinstance(a, End)]
    if ends:
        assert engine.finished
        assert actions[-1] is ends[0], "End must be the last action"
        return
    assert not engine.finished
    assert engine.waiting_for in WAIT_ACTIONS, engine.waiting_for
    waits = [a for a in actions if isinstance(a, WAIT_ACTIONS[engine.waiting_for])]
    if waits:
        last_wait[:] = [waits[-1]]
    assert last_wait, f"engine waits for {engine.waiting_for} but never asked for it"
    assert isinstance(last_wait[0], WAIT_ACTIONS[engine.waiting_for]), (
        f"engine waits for {engine.waiting_for} but last asked for {last_wait[0]}"
    )


class Driver:
    """Feeds events to one engine and checks invariants after each."""

    def __init__(self, flows: Flow | FlowLibrary, **env: str) -> None:
        self.engine = FlowEngine(flows, env=env)
        self.actions: list[Action] = []
        self._last_wait: list[Action] = []

    def send(self, event: Event, now: float | None = None) -> list[Action]:
        was_finished = self.engine.finished
        actions = self.engine.handle(event, now=now)
        check_invariants(self.engine, actions, self._last_wait, was_finished=was_finished)
        self.actions.extend(actions)
        return actions

    def start(self, now: float | None = None, **kwargs: Any) -> list[Action]:
        kwargs.setdefault("call_id", "call-1")
        return self.send(CallStarted(**kwargs), now=now)

    @property
    def step(self) -> str:
        return self.engine.current_step


def played(actions: list[Action]) -> list[str]:
    return [a.text or f"[{a.audio}]" for a in actions if isinstance(a, Play)]


def only(actions: list[Action], kind: type) -> Any:
    found = [a for a in actions if isinstance(a, kind)]
    assert len(found) == 1, f"expected one {kind.__name__} in {actions}"
    return found[0]
