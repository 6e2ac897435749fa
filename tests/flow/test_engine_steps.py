"""Every step kind, retries, global intents, captures and error paths, driven through the pure engine."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from ivr.flow import intents, questions
from ivr.flow.actions import Classify, End, HangupCall, HttpRequest, Listen, Log, Play, Transfer
from ivr.flow.builtins import MASK
from ivr.flow.events import (
    BargeIn,
    CallStarted,
    ClassificationResult,
    DigitTimeout,
    DtmfReceived,
    Event,
    Hangup,
    NoInput,
    PromptFinished,
    ProviderError,
    SpeechRecognized,
    TransferCompleted,
    TransferFailed,
    WebhookFailed,
    WebhookResult,
)
from ivr.flow.intents import Candidate
from ivr.flow.loader import FlowLibrary

from .helpers import Driver, flow_from_yaml, only, played

BASE = """
name: t
start: {start}
on_error: oops
settings:
  max_retries: 1
  no_input_timeout_ms: 3000
vars:
  balance: 150
  name: Ana
intents:
  operator: {{phrases: [operator, agent], dtmf: "0", next: agent}}
  repeat: {{phrases: [repeat, say that again], dtmf: "*", repeat: true}}
steps:
  agent:
    transfer: {{endpoint: PJSIP/agent}}
  oops:
    say: Something went wrong.
    next: bye
  bye:
    hangup:
{steps}
"""


def make(steps: str, start: str = "q", **settings: object) -> Driver:
    import textwrap

    text = BASE.format(start=start, steps=textwrap.indent(textwrap.dedent(steps), "  "))
    return Driver(flow_from_yaml(text))


MENU = """
q:
  ask: "Hi {{ name }}. Say balance or press 1, say payments or press 2."
  choices:
    balance: {phrases: [balance, how much], dtmf: "1", next: said_balance}
    payments: {phrases: [payments, pay a bill], dtmf: "2", next: said_payments}
  save: picked
  no_match:
    prompt: ["Sorry, balance or payments?", "Press 1 or 2."]
    retries: 2
    next: bye
said_balance:
  say: "Your balance is {{ balance }}."
  next: bye
said_payments:
  say: Payments.
  next: bye
"""


def test_say_renders_template_and_waits_for_prompt_end() -> None:
    d = make(MENU, start="said_balance")
    actions = d.start()
    play = only(actions, Play)
    assert play.text == "Your balance is 150."
    assert play.cacheable is False
    assert d.engine.waiting_for == "prompt"
    actions = d.send(PromptFinished())
    assert actions == [HangupCall("normal"), End("hangup", "normal")]
    assert d.engine.finished
    assert d.send(PromptFinished()) == []


def test_barge_in_on_say_moves_on() -> None:
    d = make(MENU, start="said_payments")
    d.start()
    assert isinstance(d.send(BargeIn())[-1], End)


def test_play_audio_step() -> None:
    d = make(
        """
    s:
      play: hold-music
      barge_in: false
      next: bye
    """,
        start="s",
    )
    play = only(d.start(), Play)
    assert play.audio == "hold-music"
    assert play.text is None
    assert play.barge_in is False
    assert play.cacheable is True


def test_ask_emits_play_then_listen_with_settings() -> None:
    d = make(MENU)
    actions = d.start()
    assert [type(a) for a in actions] == [Play, Listen]
    play, listen = actions
    assert isinstance(play, Play)
    assert isinstance(listen, Listen)
    assert play.text == "Hi Ana. Say balance or press 1, say payments or press 2."
    assert listen.no_input_timeout_ms == 3000
    assert listen.max_digits == 1
    assert listen.global_dtmf is True
    assert "how much" in listen.hints
    assert "operator" in listen.hints


def test_hints_leave_out_the_built_in_repeat_phrases_but_repeat_still_works() -> None:
    """Regression: "Say that again. What did you say. Pardon..." in Whisper's prompt made tiny.en hear the
    corpus's "Large." as "Watch." (issue 14, end to end); the question's own words are the hints."""
    text = """
        name: t
        start: q
        intents:
          agent: {phrases: [operator], next: done}
        steps:
          q:
            ask: Small or large?
            choices:
              small: {phrases: [small], next: done}
              large: {phrases: [large], next: done}
          done:
            hangup:
        """
    d = Driver(flow_from_yaml(text))
    listen = only(d.start(), Listen)
    assert listen.hints == ("small", "large", "operator"), "the question's answers and the flow's intents"
    again = d.send(SpeechRecognized("say that again", 0.9))
    assert only(again, Listen).step == "q", "the built-in repeat intent is still understood"
    own = Driver(
        flow_from_yaml(
            text.replace(
                "next: done}\n        steps",
                "next: done}\n          repeat: {phrases: [one more time], repeat: true}\n        steps",
            )
        )
    )
    assert "one more time" in only(own.start(), Listen).hints, "a flow's own repeat intent is a hint"


def test_no_match_reprompts_escalate_then_exhaust() -> None:
    d = make(MENU)
    d.start()
    assert played(d.send(SpeechRecognized("pizza"))) == ["Sorry, balance or payments?"]
    assert played(d.send(DtmfReceived("7"))) == ["Press 1 or 2."]
    actions = d.send(SpeechRecognized("what"))
    assert isinstance(actions[-1], End)
    assert d.step == "bye"
    assert [r.via for r in d.engine.path][-1] == "no_match 3"


def test_no_input_default_reprompt_then_on_error() -> None:
    d = make(MENU)
    d.start()
    actions = d.send(NoInput())
    assert played(actions) == [
        "Sorry, I didn't hear anything. Hi Ana. Say balance or press 1, say payments or press 2."
    ]
    assert isinstance(actions[-1], Listen)
    actions = d.send(NoInput())  # max_retries: 1 -> exhausted, no handler.next -> on_error
    assert d.step == "oops"
    assert played(actions) == ["Something went wrong."]
    assert any(isinstance(a, Log) and "no_input" in a.message for a in actions)


def test_counters_are_separate_per_kind() -> None:
    d = make(MENU)
    d.start()
    d.send(NoInput())  # no_input 1/1
    d.send(SpeechRecognized("pizza"))  # no_match 1/2
    d.send(SpeechRecognized("pizza"))  # no_match 2/2
    assert d.step == "q"
    d.send(DtmfReceived("1"))
    assert d.step == "said_balance"


def test_empty_transcript_counts_as_no_input() -> None:
    d = make(MENU)
    d.start()
    assert played(d.send(SpeechRecognized("  ")))[0].startswith("Sorry, I didn't hear anything.")


def test_low_confidence_is_no_match() -> None:
    d = Driver(
        flow_from_yaml("""
    name: t
    start: q
    settings: {min_confidence: 0.5}
    steps:
      q:
        ask: Yes or no?
        confirm: {yes: a, no: a}
        no_match: {prompt: Please say yes or no.}
      a:
        hangup:
    """)
    )
    d.start()
    assert played(d.send(SpeechRecognized("yes", confidence=0.2))) == ["Please say yes or no."]
    d.send(SpeechRecognized("yes", confidence=0.9))
    assert d.engine.finished


@pytest.mark.parametrize("event", [SpeechRecognized("can I talk to an agent"), DtmfReceived("0")])
def test_global_intent_from_inside_a_question(event: SpeechRecognized | DtmfReceived) -> None:
    d = make(MENU)
    d.start()
    d.send(SpeechRecognized("pizza"))  # a no_match first: intents still work afterwards
    actions = d.send(event)
    transfer = only(actions, Transfer)
    assert transfer.endpoint == "PJSIP/agent"
    assert d.engine.path[-1].via == "intent operator"


def test_repeat_intent_replays_prompt_without_counting() -> None:
    d = make(MENU)
    d.start()
    for _ in range(4):
        actions = d.send(SpeechRecognized("say that again"))
        assert played(actions) == ["Hi Ana. Say balance or press 1, say payments or press 2."]
        assert isinstance(actions[-1], Listen)
    d.send(DtmfReceived("*"))
    d.send(DtmfReceived("2"))
    assert d.step == "said_payments"


def test_global_intents_can_be_switched_off_per_step() -> None:
    d = make("""
    q:
      ask: Say anything.
      global_intents: false
      choices:
        zero: {phrases: [nothing], dtmf: "0", next: bye}
    """)
    d.start()
    d.send(DtmfReceived("0"))
    assert d.step == "bye"


DIGITS = """
q:
  ask: Enter your account number.
  capture: {slot: account, type: digits, min_length: 4, max_length: 6}
  no_match: {prompt: "Four to six digits please.", retries: 1}
  next: got
got:
  say: "Account {{ account | spell }}."
  next: bye
"""


def test_digits_capture_with_terminator_and_suspended_global_dtmf() -> None:
    d = make(DIGITS)
    listen = only(d.start(), Listen)
    assert listen.global_dtmf is False
    assert listen.terminator == "#"
    assert listen.max_digits == 6
    for key in "1004":  # '0' is the operator's key, but here it is data
        assert d.send(DtmfReceived(key)) == []
    actions = d.send(DtmfReceived("#"))
    assert played(actions) == ["Account 1 0 0 4."]
    assert d.engine.variables["account"] == "1004"


def test_digits_capture_completes_at_max_length() -> None:
    d = make(DIGITS)
    d.start()
    for key in "12345":
        d.send(DtmfReceived(key))
    d.send(DtmfReceived("6"))
    assert d.engine.variables["account"] == "123456"


def test_digits_capture_finishes_on_inter_digit_timeout() -> None:
    d = make(DIGITS)
    d.start()
    for key in "98765":
        d.send(DtmfReceived(key))
    d.send(DigitTimeout())
    assert d.engine.variables["account"] == "98765"


def test_digits_too_short_is_no_match() -> None:
    d = make(DIGITS)
    d.start()
    d.send(DtmfReceived("1"))
    assert played(d.send(DtmfReceived("#"))) == ["Four to six digits please."]
    assert "account" not in d.engine.variables


def test_spoken_digits_and_spoken_global_intent_during_digit_capture() -> None:
    d = make(DIGITS)
    d.start()
    d.send(SpeechRecognized("one two three four five"))
    assert d.engine.variables["account"] == "12345"
    d2 = make(DIGITS)
    d2.start()
    d2.send(SpeechRecognized("operator"))
    assert d2.engine.waiting_for == "transfer"


def test_number_capture_range() -> None:
    d = make("""
    q:
      ask: How many?
      capture: {slot: count, type: number, min: 1, max: 20}
      next: bye
    """)
    d.start()
    # understood, but out of range: a no_match with the invalid prefix, then the question again
    assert played(d.send(SpeechRecognized("fifty")))[0] == "Sorry, that is not a valid answer. How many?"
    d.send(SpeechRecognized("twelve"))
    assert d.engine.variables["count"] == 12
    d2 = make("""
    q:
      ask: How many?
      capture: {slot: count, type: number}
      next: bye
    """)
    d2.start()
    d2.send(DtmfReceived("4"))
    d2.send(DtmfReceived("2"))
    d2.send(DtmfReceived("#"))
    assert d2.engine.variables["count"] == 42


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (SpeechRecognized("yeah sure"), True),
        (SpeechRecognized("no thanks"), False),
        (DtmfReceived("1"), True),
        (DtmfReceived("2"), False),
    ],
)
def test_yes_no_capture(event: SpeechRecognized | DtmfReceived, expected: bool) -> None:
    d = make("""
    q:
      ask: Text you a receipt?
      capture: {slot: receipt, type: yes_no}
      next: bye
    """)
    d.start()
    d.send(event)
    assert d.engine.variables["receipt"] is expected


def test_confirm_sugar_branches_on_yes_and_no() -> None:
    steps = """
    q:
      ask: Is that right?
      confirm:
        yes: said_yes
        no: said_no
    said_yes: {say: Great., next: bye}
    said_no: {say: OK., next: bye}
    """
    d = make(steps)
    d.start()
    d.send(SpeechRecognized("yes that's right"))
    assert d.step == "said_yes"
    d = make(steps)
    d.start()
    d.send(SpeechRecognized("no that's wrong"))
    assert d.step == "said_no"
    d = make(steps)
    d.start()
    assert played(d.send(SpeechRecognized("banana")))[0].startswith("Sorry, I didn't understand.")


def test_enum_capture_with_synonyms_and_dtmf() -> None:
    steps = """
    q:
      ask: Small, medium or large?
      capture:
        slot: size
        type: enum
        values:
          small: [little, personal]
          large: {synonyms: [big, family size], dtmf: "3"}
      next: bye
    """
    for event, value in (
        (SpeechRecognized("a big one"), "large"),
        (SpeechRecognized("personal"), "small"),
        (DtmfReceived("3"), "large"),
        (SpeechRecognized("SMALL!"), "small"),
    ):
        d = make(steps)
        d.start()
        d.send(event)
        assert d.engine.variables["size"] == value


def test_text_capture_keeps_free_speech_and_only_exact_intents() -> None:
    steps = """
    q:
      ask: Any notes?
      capture: {slot: notes, type: text}
      next: bye
    """
    d = make(steps)
    d.start()
    d.send(SpeechRecognized("please ask the agent to ring the bell"))
    assert d.engine.variables["notes"] == "please ask the agent to ring the bell"
    d = make(steps)
    d.start()
    d.send(SpeechRecognized(" 12 Main Street. "))  # STT adds sentence punctuation; the slot holds the words
    assert d.engine.variables["notes"] == "12 Main Street"
    d = make(steps)
    d.start()
    d.send(SpeechRecognized("Agent."))
    assert d.engine.waiting_for == "transfer"
    d = make(steps)
    d.start()
    d.send(SpeechRecognized("Say that again."))
    assert d.engine.variables.get("notes") is None, "the built-in repeat, said exactly, is the intent"
    d = make(steps)
    d.start()
    d.send(SpeechRecognized("say that again about the agent"))
    assert d.engine.variables["notes"] == "say that again about the agent", "not exact: the caller's words"


def test_a_free_text_answer_that_is_no_intent_phrase_skips_the_fuzzy_matching(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Free text takes an intent only when said exactly, so an answer that is none of their phrases never
    pays for the likeness and sound tiers (the engine's costliest step, on every free-text answer)."""
    steps = """
    q:
      ask: Any notes?
      capture: {slot: notes, type: text}
      next: bye
    """
    calls: list[str] = []
    real = intents.match

    def counted(text: str, candidates: Iterable[Candidate]) -> str | None:
        calls.append(text)
        return real(text, candidates)

    monkeypatch.setattr(questions, "match", counted)
    d = make(steps)
    d.start()
    d.send(SpeechRecognized("hello from the benchmark caller"))
    assert d.engine.variables["notes"] == "hello from the benchmark caller"
    assert calls == []
    d = make(steps)
    d.start()
    d.send(SpeechRecognized("Agent."))
    assert d.engine.waiting_for == "transfer"
    assert calls == ["Agent."]


def test_branch_uses_expressions_not_strings() -> None:
    steps = """
    q:
      set:
        rich: "{{ balance > 1000 }}"
      next: check
    check:
      branch:
        - if: rich
          next: yes_rich
        - if: balance > 100 and name == 'Ana'
          next: middle
      else: poor
    yes_rich: {say: Rich., next: bye}
    middle: {say: Middle., next: bye}
    poor: {say: Poor., next: bye}
    """
    d = make(steps)
    d.start()
    assert d.engine.variables["rich"] is False  # a bool, not the truthy string "False"
    assert d.step == "middle"
    d = make(steps)
    d.start(vars={"balance": 5})
    assert d.step == "poor"


def test_set_keeps_types_and_renders_strings() -> None:
    d = make("""
    q:
      set:
        count: "{{ balance + 1 }}"
        greeting: "Hello {{ name }}"
        plain: just text
        items: ["{{ balance }}", 2]
      next: bye
    """)
    d.start()
    v = d.engine.variables
    assert v["count"] == 151
    assert v["greeting"] == "Hello Ana"
    assert v["plain"] == "just text"
    assert v["items"] == [150, 2]


def test_goto() -> None:
    d = make("""
    q:
      goto: said
    said: {say: Here., next: bye}
    """)
    d.start()
    assert d.step == "said"
    assert [r.kind for r in d.engine.path] == ["goto", "say"]


WEBHOOK = """
q:
  webhook:
    method: POST
    url: "https://api.example.com/{{ name }}?key={{ env.API_KEY }}"
    headers: {Authorization: "Bearer {{ env.API_TOKEN }}"}
    json: {balance: "{{ balance }}", who: "{{ name }}", fixed: 3}
    timeout_ms: 2500
  save: result
  filler: Looking that up.
  next: said
  on_error: failed
said: {say: "Status {{ result.status }}.", next: bye}
failed: {say: Failed., next: bye}
"""


def test_webhook_request_and_result() -> None:
    d = Driver(make(WEBHOOK).engine.library, API_KEY="k-123", API_TOKEN="t-456")
    request = only(d.start(), HttpRequest)
    assert request.method == "POST"
    assert request.url == "https://api.example.com/Ana?key=k-123"
    assert request.headers == {"Authorization": "Bearer t-456"}
    assert request.json_body == {"balance": 150, "who": "Ana", "fixed": 3}
    assert request.timeout_ms == 2500
    assert request.filler == "Looking that up."
    assert "k-123" not in repr(request)
    assert "t-456" not in repr(request)
    d.send(SpeechRecognized("hello"))  # stray event: ignored
    actions = d.send(WebhookResult(200, {"status": "active"}))
    assert played(actions) == ["Status active."]


@pytest.mark.parametrize("event", [WebhookResult(503, None), WebhookFailed("timeout")])
def test_webhook_failure_goes_to_on_error(event: WebhookResult | WebhookFailed) -> None:
    d = Driver(make(WEBHOOK).engine.library, API_KEY="k", API_TOKEN="t")
    d.start()
    d.send(event)
    assert d.step == "failed"


def test_missing_secret_takes_the_steps_own_error_path() -> None:
    """A webhook whose header or url needs an unset env.X cannot be made: that is this step's failure
    (its on_error), said in one line naming the variable, not a template error on the flow's path."""
    d = make(WEBHOOK)  # no env given
    actions = d.start()
    assert d.step == "failed"
    logs = [a.message for a in actions if isinstance(a, Log) and a.level == "warning"]
    assert logs == ["webhook needs the environment variable API_KEY (env.API_KEY), which is not set"]
    assert d.engine._last["error"] == logs[0]


def test_template_error_at_runtime_follows_on_error() -> None:
    d = Driver(make(WEBHOOK).engine.library, API_KEY="k", API_TOKEN="t")
    d.start()
    d.send(WebhookResult(200, {"other": 1}))  # result.status is undefined
    assert d.step == "oops"


def test_transfer_dialplan_and_endpoint() -> None:
    d = make("""
    q:
      transfer:
        context: sales
        extension: "{{ balance }}"
        priority: 2
        variables: {IVR_NAME: "{{ name }}"}
    """)
    transfer = only(d.start(), Transfer)
    assert transfer.to_dialplan
    assert (transfer.context, transfer.extension, transfer.priority) == ("sales", "150", 2)
    assert transfer.variables == {"IVR_NAME": "Ana"}
    assert d.send(TransferCompleted()) == [End("transferred", "q")]


def test_transfer_failure_follows_on_failure() -> None:
    d = make("""
    q:
      transfer: {endpoint: PJSIP/sales, timeout_s: 20}
      on_failure: busy
    busy: {say: "Busy ({{ last.error }}).", next: bye}
    """)
    transfer = only(d.start(), Transfer)
    assert transfer.endpoint == "PJSIP/sales"
    assert transfer.timeout_s == 20
    assert played(d.send(TransferFailed("busy", 17))) == ["Busy (transfer busy (cause 17))."]


def test_hangup_step() -> None:
    d = make("""
    q:
      hangup: {reason: done}
    """)
    assert d.start() == [HangupCall("done"), End("hangup", "done")]


def test_subflow_runs_with_its_own_vars_and_returns() -> None:
    main = flow_from_yaml("""
    name: main
    start: sub
    steps:
      sub:
        subflow: address
        with: {question: "Where to, {{ who }}?"}
        save: addr
        next: said
      said:
        say: "Going to {{ addr.street }}."
        next: bye
      bye:
        hangup:
    vars: {who: Bo}
    """)
    sub = flow_from_yaml("""
    name: address
    start: ask
    vars: {question: "Where?"}
    steps:
      ask:
        ask: "{{ question }}"
        capture: {slot: street, type: text}
        next: done
      done:
        return: {street: "{{ street }}", ok: true}
    """)
    d = Driver(FlowLibrary("main", {"main": main, "address": sub}))
    assert played(d.start()) == ["Where to, Bo?"]
    assert d.engine.flow.name == "address"
    actions = d.send(SpeechRecognized("12 Main Street"))
    assert played(actions) == ["Going to 12 Main Street."]
    assert d.engine.variables["addr"] == {"street": "12 Main Street", "ok": True}
    assert "street" not in d.engine.variables
    assert [r.flow for r in d.engine.path] == ["main", "address", "address", "main"]


def test_return_in_top_level_flow_hangs_up() -> None:
    d = make("""
    q:
      return:
    """)
    assert isinstance(d.start()[-1], End)


def test_llm_matcher_classifies_when_keywords_fail() -> None:
    steps = """
    q:
      ask: How can I help?
      matcher: llm
      choices:
        lost_card: {phrases: [lost card], description: Card lost or stolen, next: said}
        other: {phrases: [something else], next: bye}
    said: {say: Card blocked., next: bye}
    """
    d = make(steps)
    d.start()
    assert d.send(SpeechRecognized("lost card"))
    assert d.step == "said"
    d = make(steps)
    d.start()
    classify = only(d.send(SpeechRecognized("somebody stole my wallet")), Classify)
    assert [o.name for o in classify.options] == ["lost_card", "other", "operator", "repeat"]
    assert classify.options[0].description == "Card lost or stolen"
    assert d.engine.waiting_for == "classify"
    d.send(ClassificationResult("lost_card"))
    assert d.step == "said"
    d = make(steps)
    d.start()
    d.send(SpeechRecognized("hmm"))
    d.send(ClassificationResult("operator"))
    assert d.engine.waiting_for == "transfer"
    d = make(steps)
    d.start()
    d.send(SpeechRecognized("hmm"))
    actions = d.send(ProviderError("llm", "down"))
    assert played(actions)[0].startswith("Sorry, I didn't understand.")
    assert d.engine.waiting_for == "input"
    assert only(d.send(SpeechRecognized("hmm")), Classify).text == "hmm"
    assert played(d.send(ClassificationResult(None))) == ["Something went wrong."]  # max_retries 1: exhausted
    assert d.step == "oops"


def test_provider_error_follows_error_path_and_hangup_ends() -> None:
    d = make(MENU)
    d.start()
    actions = d.send(ProviderError("stt", "timeout"))
    assert d.step == "oops"
    assert played(actions) == ["Something went wrong."]
    assert d.send(Hangup()) == [Log("info", "caller hung up", "oops"), End("caller_hangup", "caller hung up")]
    assert d.send(CallStarted("again")) == []


def test_provider_error_without_error_step_hangs_up() -> None:
    d = Driver(
        flow_from_yaml("""
    name: t
    start: s
    steps:
      s: {say: Hello., next: b}
      b: {hangup: }
    """)
    )
    d.start()
    actions = d.send(ProviderError("tts"))
    assert actions[-2:] == [HangupCall("error"), End("error", "tts provider error while playing")]


def test_type_ahead_digits_answer_the_next_question() -> None:
    d = make("""
    q:
      say: Welcome to the bank.
      next: menu
    menu:
      ask: Press 1 for balance.
      choices:
        balance: {dtmf: "1", next: said}
    said: {say: Balance., next: bye}
    """)
    d.start()
    assert d.send(DtmfReceived("1")) == []
    actions = d.send(PromptFinished())
    assert played(actions) == ["Balance."]  # the menu prompt was skipped


def test_sensitive_capture_is_masked_everywhere() -> None:
    d = make("""
    q:
      ask: PIN?
      capture: {slot: pin, type: digits, min_length: 4, max_length: 4, sensitive: true}
      next: check
    check:
      webhook: {url: "https://x.example/verify", json: {pin: "{{ pin }}"}}
      next: bye
    """)
    listen = only(d.start(), Listen)
    assert listen.sensitive is True
    for key in "4321":
        d.send(DtmfReceived(key))
    request = only(d.actions, HttpRequest)
    assert request.json_body == {"pin": "4321"}  # the webhook needs it
    text = (
        repr(d.engine.transcript) + repr(d.engine.path) + repr([a for a in d.actions if isinstance(a, Log)])
    )
    assert "4321" not in text
    assert MASK in repr(d.engine.transcript)
    assert d.engine.safe_variables()["pin"] == MASK
    d2 = make("""
    q:
      ask: PIN?
      capture: {slot: pin, type: digits, sensitive: true}
      next: bye
    """)
    d2.start()
    d2.send(SpeechRecognized("one two three four"))
    assert "one two three four" not in repr(d2.engine.transcript)
    assert d2.engine.variables["pin"] == "1234"


def test_call_started_vars_and_builtins() -> None:
    d = make("""
    q:
      say: "{{ name }} from {{ call.caller_id }} via {{ call.dialed }} ({{ call.args.lang }}, {{ call.direction }})."
      next: bye
    """)
    actions = d.start(
        caller_id="+15550100", dialed="100", args={"lang": "en"}, direction="outbound", vars={"name": "Zoe"}
    )
    assert played(actions) == ["Zoe from +15550100 via 100 (en, outbound)."]


def test_loop_without_waiting_is_cut_off() -> None:
    d = make("""
    q:
      set: {n: "{{ (n | default(0)) + 1 }}"}
      next: again
    again:
      branch:
        - if: n > 100000
          next: bye
      else: q
    """)
    actions = d.start()
    assert actions[-1] == End("error", "loop without input")


def test_engine_is_deterministic() -> None:
    events: list[Event] = [SpeechRecognized("pizza"), NoInput(), DtmfReceived("2"), PromptFinished()]
    runs = []
    for _ in range(2):
        d = make(MENU)
        out = d.start()
        for e in events:
            out += d.send(e)
        runs.append(out)
    assert runs[0] == runs[1]


TYPEAHEAD_DIGITS = """
q:
  say: Welcome.
  next: acct
acct:
  ask: Account number?
  capture: {slot: account, type: digits, min_length: 4}
  no_match: {prompt: Four digits at least., retries: 2}
  next: bye
"""


def test_partial_type_ahead_digits_continue_after_the_prompt() -> None:
    d = make(TYPEAHEAD_DIGITS)
    d.start()
    d.send(DtmfReceived("1"))
    d.send(DtmfReceived("2"))
    actions = d.send(PromptFinished())
    assert played(actions) == ["Account number?"]
    d.send(DtmfReceived("3"))
    d.send(DtmfReceived("4"))
    d.send(DtmfReceived("#"))
    assert d.engine.variables["account"] == "1234"


def test_bad_type_ahead_reprompts_once() -> None:
    d = make(TYPEAHEAD_DIGITS)
    d.start()
    d.send(DtmfReceived("1"))
    d.send(DtmfReceived("#"))
    actions = d.send(PromptFinished())
    assert played(actions) == ["Four digits at least."]
    assert [type(a) for a in actions if isinstance(a, Play | Listen)] == [Play, Listen]


def test_unloaded_subflow_is_an_error_path() -> None:
    d = Driver(
        flow_from_yaml("""
    name: t
    start: s
    on_error: e
    steps:
      s: {subflow: other, next: e}
      e: {hangup: }
    """)
    )
    actions = d.start()
    assert any(isinstance(a, Log) and "not loaded" in a.message for a in actions)
    assert actions[-1] == End("hangup", "normal")


def test_errors_in_a_row_end_the_call() -> None:
    d = make("""
    q:
      webhook: {url: "https://x.example/"}
      next: bye
      on_error: q
    """)
    d.start()
    d.send(WebhookFailed("down"))
    d.send(WebhookFailed("down"))
    d.send(WebhookFailed("down"))
    actions = d.send(WebhookFailed("down"))
    assert actions[-2:] == [HangupCall("error"), End("error", "webhook failed: down")]


def test_a_bare_terminator_is_not_an_answer() -> None:
    # e.g. the '#' a caller adds after an entry that already ended itself at max_length
    d = make(DIGITS)
    d.start()
    assert d.send(DtmfReceived("#")) == []
    for key in "4321":
        d.send(DtmfReceived(key))
    assert played(d.send(DtmfReceived("#"))) == ["Account 4 3 2 1."]
