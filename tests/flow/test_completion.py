"""Does a text already answer the question? What the runtime asks at a pause (words checked at pauses):
the engine's own interpretation, without changing its state."""

from __future__ import annotations

from ivr.flow.actions import Listen
from ivr.flow.completion import answer_complete
from ivr.flow.events import PromptFinished, SpeechRecognized
from ivr.flow.model import AskStep

from .helpers import Driver, flow_from_yaml, only

FLOW = """
name: t
start: size
intents:
  agent:
    phrases: [agent, operator]
    next: done
settings:
  digits_incomplete_ms: 3000
  min_confidence: 0.3
steps:
  size:
    ask: Small or large?
    choices:
      small: {phrases: [small], next: card}
      large: {phrases: [large, big one], next: card}
  card:
    ask: Your card number?
    capture: {slot: card, type: digits, min_length: 8}
    end_of_turn: {words_min_confidence: 0.8}
    next: sure
  sure:
    ask: Shall I order it?
    capture: {slot: ok, type: yes_no}
    next: note
  note:
    ask: Anything else?
    capture: {slot: note, type: text}
    next: keys
  keys:
    ask: Press a key.
    input: dtmf
    choices:
      one: {dtmf: "1", next: done}
  done:
    hangup:
"""


def test_whole_answers_per_kind_of_question() -> None:
    flow = flow_from_yaml(FLOW)

    def complete(step: str, text: str) -> bool:
        ask = flow.steps[step]
        assert isinstance(ask, AskStep)
        return answer_complete(flow, ask, text)

    assert complete("size", "A large one, please.")
    assert complete("size", "operator"), "a global intent answers any question that takes them"
    assert not complete("size", "Let me think,")
    assert not complete("size", "I'd like")
    assert not complete("size", "")
    assert not complete("card", "five five six six"), "shorter than min_length: the caller reads on"
    assert complete("card", "five five six six seven seven eight eight")
    assert complete("sure", "Yes,")
    assert not complete("sure", "Well,")
    assert complete("note", "Let me think,"), "free text: the words cannot tell, the model decides"


def test_the_engine_judges_its_current_question_and_changes_nothing() -> None:
    d = Driver(flow_from_yaml(FLOW))
    d.start()
    d.send(PromptFinished())
    assert d.step == "size"
    assert d.engine.answer_complete("large", 0.6)
    assert not d.engine.answer_complete("large", 0.55), "below words_min_confidence (0.6): not at a pause"
    assert d.engine.answer_complete("large")
    assert not d.engine.answer_complete("large", 0.2), "min_confidence: the answer would be a no_match"
    assert not d.engine.answer_complete("card please maybe")
    before = d.engine.snapshot()
    d.engine.answer_complete("small")
    assert d.engine.snapshot() == before
    actions = d.send(SpeechRecognized("big one", 0.9))
    assert d.step == "card"
    listen = only(actions, Listen)
    assert listen.words_check == "auto"
    assert listen.endpointing_silence_ms == 1500, "digits_silence_ms: the pause the words are judged at"
    assert listen.incomplete_silence_ms == 3000, "digits_incomplete_ms: a short string waits this long"
    assert not listen.turn_model
    assert not d.engine.answer_complete("four one one two")
    assert d.engine.answer_complete("4112 3344")
    assert d.engine.answer_complete("4112 3344", 0.85)
    assert not d.engine.answer_complete("4112 3344", 0.75), "the step's own floor (0.8)"
    d.send(SpeechRecognized("4112 3344", 0.9))
    d.send(SpeechRecognized("yes", 0.9))
    d.send(SpeechRecognized("no thanks", 0.9))
    assert d.step == "keys"
    assert not d.engine.answer_complete("one"), "a keys-only question takes no words"
