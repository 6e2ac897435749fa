"""Captures real IVRs ask for, step by step through the pure engine: dates (relative to the call's start
in the flow's time zone), times, money, phone numbers and spelled references, by speech and by keys,
with their rules, their own invalid reprompts and read-back confirmation."""

from __future__ import annotations

import datetime as dt
import textwrap

import pytest

from ivr.flow.actions import Action, Listen, Play
from ivr.flow.events import DigitTimeout, DtmfReceived, NoInput, SpeechRecognized

from .helpers import Driver, flow_from_yaml, only, played

# Tuesday 2026-12-01, 23:30 in UTC: already Wednesday in Tokyo
LATE_TUESDAY_UTC = dt.datetime(2026, 12, 1, 23, 30, tzinfo=dt.UTC).timestamp()
TUESDAY_10AM_UTC = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC).timestamp()


def make(capture: str, *, settings: str = "", ask: str = "When?", extra: str = "") -> Driver:
    def block(text: str, indent: int) -> str:
        return textwrap.indent(textwrap.dedent(text).strip(), " " * indent)

    text = "\n".join(
        [
            "name: t",
            "start: q",
            "settings:",
            "  max_retries: 1",
            block(settings, 2) if settings else "",
            "steps:",
            "  q:",
            f"    ask: {ask}",
            "    capture:",
            block(capture, 6),
            block(extra, 4) if extra else "",
            "    next: done",
            "  done:",
            "    say: Done.",
            "    next: bye",
            "  bye:",
            "    hangup:",
        ]
    )
    return Driver(flow_from_yaml(text))


def keys(d: Driver, entry: str) -> list[Action]:
    out: list[Action] = []
    for key in entry:
        out += d.send(DtmfReceived(key))
    return out


@pytest.mark.parametrize(
    ("said", "stored"),
    [
        ("tomorrow", "2026-12-02"),
        ("next Tuesday", "2026-12-08"),
        ("the third", "2026-12-03"),
        ("um, the twenty first of January please", "2027-01-21"),
        ("March the third", "2027-03-03"),
        ("in two weeks", "2026-12-15"),
    ],
)
def test_date_by_speech_is_relative_to_the_call_start(said: str, stored: str) -> None:
    d = make("slot: when\ntype: date")
    d.start(now=TUESDAY_10AM_UTC)
    d.send(SpeechRecognized(said), now=TUESDAY_10AM_UTC + 3600 * 30)  # a day later: the start counts
    assert d.engine.variables["when"] == stored
    assert d.step == "done"


def test_date_uses_the_flows_time_zone() -> None:
    d = make("slot: when\ntype: date", settings="timezone: Asia/Tokyo")
    d.start(now=LATE_TUESDAY_UTC)  # Wednesday morning in Tokyo
    d.send(SpeechRecognized("tomorrow"))
    assert d.engine.variables["when"] == "2026-12-03"


def test_date_by_keys_in_a_pattern_ends_by_itself() -> None:
    d = make("slot: born\ntype: date\ndtmf_pattern: DDMMYYYY\nprefer: past")
    d.start(now=TUESDAY_10AM_UTC)
    listen = only(d.actions, Listen)
    assert (listen.max_digits, listen.global_dtmf) == (8, False)
    keys(d, "0703198")
    assert d.step == "q"
    keys(d, "5")
    assert d.engine.variables["born"] == "1985-03-07"


def test_date_rules_reprompt_with_the_invalid_prompt() -> None:
    d = make(
        """
        slot: when
        type: date
        min: today+1
        max: today+30
        weekdays: [mon, tue, wed, thu, fri]
        invalid:
          prefix: "We can't book {{ last.value | say_date }}."
        """
    )
    d.start(now=TUESDAY_10AM_UTC)
    out = d.send(SpeechRecognized("Saturday"))
    assert played(out) == ["We can't book Saturday, December 5, 2026. When?"]
    assert d.engine._last["invalid"] == "weekday"
    play = only(out, Play)
    assert [p.cacheable for p in play.segments] == [False, True]  # the question part stays cacheable
    d.send(SpeechRecognized("today"))  # too early: the second failure exhausts max_retries 1
    assert d.engine.outcome is not None
    assert d.engine.outcome.outcome == "error"


def test_time_by_speech_and_keys() -> None:
    d = make('slot: at\ntype: time\nmin: "08:00"\nmax: "17:00"')
    d.start()
    d.send(SpeechRecognized("half past three"))
    assert d.engine.variables["at"] == "15:30"
    d = make("slot: at\ntype: time")
    d.start()
    keys(d, "0945")
    assert d.engine.variables["at"] == "09:45"


def test_a_bare_hour_is_read_inside_the_window() -> None:
    d = make('slot: at\ntype: time\nmin: "07:00"\nmax: "12:00"')
    d.start()
    d.send(SpeechRecognized("at nine"))
    assert d.engine.variables["at"] == "09:00"


@pytest.mark.parametrize(
    ("said", "amount"),
    [
        ("twelve fifty", 12.5),
        ("12.50", 12.5),
        ("$7", 7.0),
        ("fifty cents", 0.5),
        ("twelve dollars and five cents", 12.05),
    ],
)
def test_money_by_speech(said: str, amount: float) -> None:
    d = make("slot: amount\ntype: money")
    d.start()
    d.send(SpeechRecognized(said))
    assert d.engine.variables["amount"] == amount


def test_money_by_keys_star_is_the_decimal_point() -> None:
    d = make("slot: amount\ntype: money\nmax: 500")
    d.start()
    keys(d, "12*5#")
    assert d.engine.variables["amount"] == 12.5
    d = make("slot: amount\ntype: money\ndtmf_decimal: cents")
    d.start()
    keys(d, "1250#")
    assert d.engine.variables["amount"] == 12.5


def test_money_over_the_limit_is_invalid() -> None:
    d = make("slot: amount\ntype: money\nmax: 500\ninvalid: {prompt: The most you can pay is 500 dollars.}")
    d.start()
    out = keys(d, "900#")
    assert played(out) == ["The most you can pay is 500 dollars."]
    assert d.engine._last["invalid"] == "too_large"


def test_phone_by_speech_and_keys_is_e164() -> None:
    d = make("slot: number\ntype: phone", settings="language: en-GB")
    d.start()
    d.send(SpeechRecognized("oh two oh, seven nine four six, oh nine five eight"))
    assert d.engine.variables["number"] == "+442079460958"
    d = make("slot: number\ntype: phone\nregion: US")
    d.start()
    keys(d, "4155552671")
    d.send(DigitTimeout())
    assert d.engine.variables["number"] == "+14155552671"


def test_an_impossible_phone_number_is_invalid() -> None:
    d = make("slot: number\ntype: phone")
    d.start()
    keys(d, "123#")
    assert d.engine._last["invalid"] == "pattern"
    assert d.step == "q"


@pytest.mark.parametrize(
    ("said", "ref"),
    [
        ("B as in bravo, seven, double four", "B744"),
        ("alpha x-ray one two three", "AX123"),
        ("AB12C", "AB12C"),
        ("my reference is kilo lima 9", "KL9"),
    ],
)
def test_spelled_references(said: str, ref: str) -> None:
    d = make("slot: ref\ntype: alphanumeric\npattern: '[A-Z]{1,2}[0-9]{1,4}[A-Z]?'")
    d.start()
    d.send(SpeechRecognized(said))
    assert d.engine.variables["ref"] == ref


def test_reference_rules_length_and_allowed_values() -> None:
    flow = flow_from_yaml(
        """
        name: t
        start: q
        vars: {refs: [AB12, ZZ99]}
        steps:
          q:
            ask: Your reference?
            capture: {slot: ref, type: alphanumeric, min_length: 4, allowed: "{{ refs }}"}
            next: b
          b: {hangup: }
        """
    )
    d = Driver(flow)
    d.start()
    d.send(SpeechRecognized("A B"))
    assert d.engine._last["invalid"] == "too_short"
    d.send(SpeechRecognized("zulu zulu nine nine"))
    assert d.engine.variables["ref"] == "ZZ99"


def test_an_allowed_list_in_the_flow() -> None:
    d = make("slot: code\ntype: digits\nallowed: ['1234', '9876']")
    d.start()
    keys(d, "5555#")
    assert d.engine._last["invalid"] == "not_allowed"
    keys(d, "9876#")
    assert d.engine.variables["code"] == "9876"


def test_confirm_reads_back_and_yes_stores() -> None:
    d = make("slot: when\ntype: date\nconfirm: true")
    d.start(now=TUESDAY_10AM_UTC)
    out = d.send(SpeechRecognized("tomorrow"))
    assert played(out) == ["I heard Wednesday, December 2, 2026. Is that right?"]
    assert "when" not in d.engine.variables
    listen = only(out, Listen)
    assert (listen.max_digits, listen.global_dtmf, listen.hints[:2]) == (1, True, ("yes", "no"))
    d.send(DtmfReceived("1"))
    assert d.engine.variables["when"] == "2026-12-02"
    assert d.step == "done"


def test_confirm_no_asks_the_question_again() -> None:
    d = make('slot: at\ntype: time\nconfirm: "So, {{ heard }}?"')
    d.start()
    assert played(d.send(SpeechRecognized("nine thirty am"))) == ["So, 9:30 AM?"]
    assert played(d.send(SpeechRecognized("no"))) == ["When?"]
    d.send(SpeechRecognized("ten am"))
    d.send(SpeechRecognized("yes"))
    assert d.engine.variables["at"] == "10:00"


def test_silence_during_a_read_back_repeats_the_read_back() -> None:
    d = make("slot: amount\ntype: money\nconfirm: true")
    d.start()
    d.send(SpeechRecognized("twelve fifty"))
    assert played(d.send(NoInput())) == ["Sorry, I didn't hear anything. I heard $12.50. Is that right?"]


def test_a_sensitive_capture_cannot_be_confirmed() -> None:
    from ivr.flow.validate import validate_source

    report = validate_source(
        "name: t\nstart: q\nsteps:\n  q:\n    ask: PIN?\n    capture: {slot: pin, type: digits, sensitive: true, confirm: true}\n    next: b\n  b: {hangup: }\n",
        "<t>",
    )
    assert [(i.line, "cannot be read back" in i.message) for i in report.errors] == [(6, True)]
