"""A call's flow state as plain JSON, restored on a fresh engine (another instance) and resumed there."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ivr.flow.actions import End, HttpRequest, Listen, Play, Transfer
from ivr.flow.engine import FlowEngine, SnapshotError
from ivr.flow.events import (
    CallResumed,
    CallStarted,
    DtmfReceived,
    NoInput,
    PromptFinished,
    SpeechRecognized,
    WebhookResult,
)
from ivr.flow.loader import FlowLibrary

from .helpers import Driver, flow_from_yaml, only, played

BANK = """
name: bank
start: hello
on_error: oops
settings:
  max_retries: 2
  resume_prompt: "Sorry {{ name }}, we were cut off."
vars: {name: Ana, tries: 0}
steps:
  hello:
    say: "Hello {{ name }}."
    next: pin
  pin:
    ask: Your PIN?
    capture: {slot: pin, type: digits, min_length: 4, max_length: 4, sensitive: true}
    next: copy
  copy:
    set: {pin_copy: "{{ pin }}", tries: "{{ tries + 1 }}"}
    next: menu
  menu:
    ask: Press 1 for balance, 2 for an agent.
    choices:
      balance: {dtmf: "1", phrases: [balance], next: lookup}
      agent: {dtmf: "2", phrases: [agent], next: agent}
    save: picked
    no_input: {retries: 2, next: oops}
  lookup:
    webhook: {url: "https://bank.example/balance"}
    save: account
    next: said
  said:
    say: "Your balance is {{ account.balance }}."
    next: bye
  agent:
    transfer: {endpoint: PJSIP/agents}
  oops:
    say: Sorry.
    next: bye
  bye:
    hangup:
"""


def bank() -> FlowLibrary:
    flow = flow_from_yaml(BANK)
    return FlowLibrary("bank", {"bank": flow})


def through_json(engine: FlowEngine) -> dict[str, Any]:
    """What the records store keeps: the snapshot must survive JSON unchanged."""
    state = engine.snapshot()
    text = json.dumps(state, allow_nan=False)
    back = json.loads(text)
    assert back == state
    return dict(back)


def at_menu_after_one_no_input() -> Driver:
    d = Driver(bank())
    d.start(now=1_000.0, caller_id="+15550100", args={"line": "7002"})
    d.send(PromptFinished(), now=1_001.0)
    for key in "4321":
        d.send(DtmfReceived(key), now=1_002.0)
    assert d.step == "menu"
    d.send(NoInput(), now=1_010.0)
    assert d.engine.retries == {"no_input": 1, "no_match": 0}
    return d


def test_a_restored_engine_says_the_apology_then_asks_its_question_again() -> None:
    first = at_menu_after_one_no_input()
    state = through_json(first.engine)
    again = Driver(bank())
    again.engine.restore(state)
    actions = again.send(CallResumed("call-1"), now=1_020.0)
    assert played(actions) == ["Sorry Ana, we were cut off."]
    assert only(actions, Play).barge_in is False
    assert again.engine.waiting_for == "prompt"
    actions = again.send(PromptFinished(), now=1_021.0)
    assert played(actions) == ["Press 1 for balance, 2 for an agent."]
    assert only(actions, Listen).step == "menu"
    assert again.engine.retries == {"no_input": 1, "no_match": 0}, "the question's counters go on"
    # the same answer now leads where it led on the first instance
    actions = again.send(DtmfReceived("1"), now=1_022.0)
    assert only(actions, HttpRequest).url == "https://bank.example/balance"
    assert again.engine.variables["picked"] == "balance"
    assert again.engine.variables["tries"] == 1


def test_retries_used_before_the_death_are_not_given_again() -> None:
    again = Driver(bank())
    again.engine.restore(through_json(at_menu_after_one_no_input().engine))
    again.send(CallResumed("call-1"))
    again.send(PromptFinished())
    again.send(NoInput())
    actions = again.send(NoInput())  # the third no_input overall: retries (2) used up
    assert played(actions) == ["Sorry."]
    assert again.step == "oops"


def test_sensitive_values_and_their_copies_are_left_out() -> None:
    d = at_menu_after_one_no_input()
    assert d.engine.variables["pin"] == "4321"
    state = through_json(d.engine)
    assert "4321" not in json.dumps(state)
    assert "pin" not in state["frames"][0]["vars"]
    assert "pin_copy" not in state["frames"][0]["vars"]
    assert d.engine.checkpoint_variables() == {"name": "Ana", "tries": 1}
    again = Driver(bank())
    again.engine.restore(state)
    assert "pin" not in again.engine.variables


def test_path_transcript_and_call_facts_carry_over() -> None:
    d = at_menu_after_one_no_input()
    again = Driver(bank())
    again.engine.restore(through_json(d.engine))
    assert again.engine.path == d.engine.path
    assert again.engine.transcript == d.engine.transcript
    again.send(CallResumed("call-1"))
    again.send(PromptFinished())
    assert [p.via for p in again.engine.path][-1] == "resumed"
    state = again.engine.snapshot()
    assert state["call"]["caller_id"] == "+15550100"
    assert state["call"]["args"] == {"line": "7002"}
    assert state["started"] == 1_000.0


def test_keys_pressed_during_the_apology_answer_the_question() -> None:
    again = Driver(bank())
    again.engine.restore(through_json(at_menu_after_one_no_input().engine))
    again.send(CallResumed("call-1"))
    assert again.send(DtmfReceived("2")) == []
    actions = again.send(PromptFinished())
    assert isinstance(actions[-1], Transfer)


def test_a_call_in_a_webhook_asks_again_and_a_subflow_returns_where_it_should() -> None:
    main = flow_from_yaml("""
    name: main
    start: sub
    settings: {resume_prompt: null}
    steps:
      sub:
        subflow: address
        save: addr
        next: said
      said:
        say: "Going to {{ addr.street }}."
        next: bye
      bye:
        hangup:
    """)
    sub = flow_from_yaml("""
    name: address
    start: ask
    settings: {resume_prompt: null}  # the current flow's settings say it
    steps:
      ask:
        ask: Where to?
        capture: {slot: street, type: text}
        next: check
      check:
        webhook: {url: "https://maps.example/check"}
        next: done
      done:
        return: {street: "{{ street }}"}
    """)
    library = FlowLibrary("main", {"main": main, "address": sub})
    d = Driver(library)
    d.start()
    d.send(SpeechRecognized("12 Main Street"))
    assert d.engine.waiting_for == "webhook"
    state = through_json(d.engine)
    again = Driver(library)
    again.engine.restore(state)
    actions = again.send(CallResumed("call-1"))
    assert only(actions, HttpRequest).url == "https://maps.example/check"  # at-least-once
    actions = again.send(WebhookResult(200, {}))
    assert played(actions) == ["Going to 12 Main Street."]
    assert again.engine.flow.name == "main"


def test_snapshots_that_cannot_be_resumed_are_refused() -> None:
    state = through_json(at_menu_after_one_no_input().engine)
    for broken, why in [
        ({**state, "v": 99}, "version"),
        ({**state, "flow": "other"}, "flow"),
        ({**state, "step": "gone"}, "does not exist"),
        ({**state, "waiting": "start"}, "resume"),
        ({**state, "frames": "nope"}, "malformed"),
        ({k: v for k, v in state.items() if k != "counts"}, "malformed"),
    ]:
        with pytest.raises(SnapshotError, match=why):
            FlowEngine(bank()).restore(broken)
    used = FlowEngine(bank())
    used.handle(CallStarted("c"))
    with pytest.raises(SnapshotError, match="fresh"):
        used.restore(state)


def test_a_restored_engine_ignores_a_second_start() -> None:
    engine = FlowEngine(bank())
    engine.restore(through_json(at_menu_after_one_no_input().engine))
    assert engine.handle(CallStarted("c")) == []
    assert played(engine.handle(CallResumed("c"))) == ["Sorry Ana, we were cut off."]
    assert engine.handle(CallResumed("c")) == []


def test_resume_prompt_defaults_to_a_short_apology() -> None:
    flow = flow_from_yaml(BANK.replace('  resume_prompt: "Sorry {{ name }}, we were cut off."\n', ""))
    d = Driver(flow)
    d.start()
    again = Driver(flow)
    again.engine.restore(through_json(d.engine))
    assert played(again.send(CallResumed("c"))) == ["Sorry, we were cut off for a moment. Let's go on."]
    assert played(again.send(PromptFinished())) == ["Hello Ana."]
    assert not any(isinstance(a, End) for a in again.actions)
