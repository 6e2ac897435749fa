"""A turn-corpus item's question as the flow engine sees it: the hints the runtime would pass, how an
answer is read, whether the words so far make a whole answer, and the question written as a flow.

Shared by the decision harness (:mod:`ivr.bench.turn_harness`) and the whole-call runs
(:mod:`ivr.bench.turn_calls`), which neither of them owns.
"""

from __future__ import annotations

import json
from typing import Any

from ivr.bench.turn_corpus import Item
from ivr.flow.completion import answer_complete
from ivr.flow.intents import Candidate, match, parse_digits, parse_yes_no
from ivr.flow.model import AskStep, Flow
from ivr.flow.questions import DIGIT_HINTS, YES_NO_HINTS
from ivr.flow.validate import validate_source


def _candidates(item: Item) -> list[Candidate]:
    return [Candidate(name, phrases) for name, phrases in item.spec.choices.items()]


def hints_for(item: Item) -> list[str]:
    """What the runtime passes (``ivr.flow.questions.listen_for``): choice names and phrases; digit words
    for a digit capture, "yes" and "no" for a yes/no one."""
    if item.spec.capture == "digits":
        return list(DIGIT_HINTS["en"])
    if item.spec.capture == "yes_no":
        return list(YES_NO_HINTS["en"])
    return [p for name, phrases in item.spec.choices.items() for p in (name.replace("_", " "), *phrases)]


def interpret(item: Item, text: str) -> str | None:
    if item.spec.capture == "digits":
        return parse_digits(text)
    if item.spec.capture == "yes_no":
        yes = parse_yes_no(text)
        return None if yes is None else ("yes" if yes else "no")
    return match(text, _candidates(item))


def words_finished(item: Item, text: str, confidence: float | None = None) -> bool:
    """Do the words heard so far already make a whole answer for the step? The flow engine's own
    judgement (:func:`ivr.flow.completion.answer_complete`, what the call runtime asks at a pause) on the
    item's question as a flow (:func:`flow_yaml`): a choice, a yes or a no, a digit string of at least
    the capture's ``min_length`` digits; never words heard below the step's ``words_min_confidence``."""
    flow = _flow(item)
    step = flow.steps["ask"]
    assert isinstance(step, AskStep)
    return answer_complete(flow, step, text, confidence=confidence)


def flow_yaml(item: Item, name: str) -> str:
    """The item's question as a flow: the answer leads to a short reply whose first frame is measured."""
    spec = item.spec
    head: dict[str, Any] = {
        "name": name,
        "start": "ask",
        "on_error": "done",
        "settings": {"no_input_timeout_ms": 8000, "filler": None},
    }
    steps: dict[str, Any] = {}
    if spec.capture == "choice":
        choices = {
            name: {"phrases": list(phrases), "next": f"got_{name}"} for name, phrases in spec.choices.items()
        }
        steps["ask"] = {"ask": spec.prompt, "choices": choices, "no_match": {"retries": 0, "next": "missed"}}
        for name in spec.choices:
            steps[f"got_{name}"] = {"say": "Got it.", "next": "done"}
    else:
        capture: dict[str, Any] = {
            "slot": "value",
            "type": "digits" if spec.capture == "digits" else "yes_no",
        }
        if spec.min_digits:
            capture["min_length"] = spec.min_digits
        steps["ask"] = {
            "ask": spec.prompt,
            "capture": capture,
            "next": "got",
            "no_match": {"retries": 0, "next": "missed"},
        }
        steps["got"] = {"say": "Got it.", "next": "done"}
    steps["missed"] = {"say": "Sorry.", "next": "done"}
    steps["done"] = {"hangup": None}
    return json.dumps({**head, "steps": steps})  # JSON is YAML


_FLOWS: dict[str, Flow] = {}


def _flow(item: Item) -> Flow:
    text = flow_yaml(item, "question")
    flow = _FLOWS.get(text)
    if flow is None:
        report = validate_source(text, "question.yaml")
        assert report.flow is not None, report.errors
        flow = _FLOWS[text] = report.flow
    return flow
