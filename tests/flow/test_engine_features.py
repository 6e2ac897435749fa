"""Reprompt semantics, the built-in repeat intent, dynamic options, time-aware routing, record and
language steps, step by step through the pure engine."""

from __future__ import annotations

import datetime as dt

from ivr.flow.actions import End, HangupCall, HttpRequest, Listen, Log, Play, Record
from ivr.flow.events import (
    DtmfReceived,
    Hangup,
    NoInput,
    RecordingFailed,
    RecordingFinished,
    SpeechRecognized,
    WebhookResult,
)
from ivr.flow.prompts import fixed_texts

from .helpers import Driver, flow_from_yaml, only, played

MONDAY_9AM_LONDON = dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC).timestamp()  # GMT in December
SATURDAY_NOON = dt.datetime(2026, 12, 5, 12, 0, tzinfo=dt.UTC).timestamp()
CHRISTMAS_10AM = dt.datetime(2026, 12, 25, 10, 0, tzinfo=dt.UTC).timestamp()

MENU = """
name: t
start: q
settings: {max_retries: 2}
steps:
  q:
    ask: Sales or support?
    choices:
      sales: {phrases: [sales], dtmf: "1", next: bye}
      support: {phrases: [support], dtmf: "2", next: bye}
    no_input:
      prefix: ["Still there?", "Hello?"]
    no_match:
      prompt: "Please say sales or support, {{ call.caller_name or 'caller' }}."
  bye:
    hangup:
"""


def test_a_prefix_comes_before_the_question_as_separate_cacheable_parts() -> None:
    d = Driver(flow_from_yaml(MENU))
    d.start()
    play = only(d.send(NoInput()), Play)
    assert play.text == "Still there? Sales or support?"
    assert [(p.text, p.cacheable) for p in play.segments] == [
        ("Still there?", True),
        ("Sales or support?", True),
    ]
    assert play.cacheable
    assert played(d.send(NoInput())) == ["Hello? Sales or support?"]


def test_a_prompt_replaces_the_question() -> None:
    d = Driver(flow_from_yaml(MENU))
    d.start(caller_name="Ana")
    play = only(d.send(SpeechRecognized("pizza")), Play)
    assert [(p.text, p.cacheable) for p in play.segments] == [("Please say sales or support, Ana.", False)]


def test_the_default_prefix_and_the_question_stay_apart() -> None:
    d = Driver(
        flow_from_yaml(
            """
            name: t
            start: q
            steps:
              q:
                ask: "Hi {{ call.caller_name }}, sales or support?"
                choices:
                  sales: {dtmf: "1", next: bye}
              bye: {hangup: }
            """
        )
    )
    d.start(caller_name="Bo")
    play = only(d.send(NoInput()), Play)
    assert [(p.text, p.cacheable) for p in play.segments] == [
        ("Sorry, I didn't hear anything.", True),
        ("Hi Bo, sales or support?", False),
    ]


def test_prefix_and_prompt_together_are_refused() -> None:
    from ivr.flow.validate import validate_source

    text = MENU.replace('prefix: ["Still there?", "Hello?"]', "prefix: Hi\n      prompt: Ho")
    report = validate_source(text, "<t>")
    assert any("give one of them, not both" in i.message for i in report.errors)


def test_repeat_that_says_the_question_again_without_counting() -> None:
    d = Driver(flow_from_yaml(MENU))
    d.start()
    d.send(NoInput())
    d.send(NoInput())
    out = d.send(SpeechRecognized("sorry, could you repeat that?"))
    assert played(out) == ["Sales or support?"]
    assert d.engine._last["choice"] == "repeat"
    out = d.send(NoInput())  # the third silence: retries were not reset, and repeat did not count
    assert any(isinstance(a, End) for a in out)


def test_repeat_phrases_follow_the_language_and_can_be_switched_off() -> None:
    off = MENU.replace("settings: {max_retries: 2}", "settings: {max_retries: 2, repeat_phrases: []}")
    d = Driver(flow_from_yaml(off))
    d.start()
    assert played(d.send(SpeechRecognized("repeat that"))) == ["Please say sales or support, caller."]


SLOTS = """
name: clinic
start: lookup
steps:
  lookup:
    webhook: {method: GET, url: "https://clinic.example.com/slots"}
    save: slots
    next: pick
  pick:
    ask: Which time suits you?
    options:
      from: slots.available
      label: "{{ item.time }} with {{ item.doctor }}"
      value: item.id
      phrases: ["{{ item.time }}", "{{ item.doctor }}"]
      empty: none_left
    save: slot
    next: booked
  booked:
    say: "Booked {{ slot }}."
    next: bye
  none_left:
    say: No slots left.
    next: bye
  bye:
    hangup:
"""
AVAILABLE = {
    "available": [
        {"id": "s1", "time": "9 o'clock", "doctor": "Doctor Lee"},
        {"id": "s2", "time": "10:30", "doctor": "Doctor Patel"},
    ]
}


def test_options_are_read_out_with_keys_and_picked_by_key() -> None:
    d = Driver(flow_from_yaml(SLOTS))
    d.start()
    out = d.send(WebhookResult(200, AVAILABLE))
    play = only(out, Play)
    assert [(p.text, p.cacheable) for p in play.segments] == [
        ("Which time suits you?", True),
        ("For 9 o'clock with Doctor Lee, press 1.", False),
        ("For 10:30 with Doctor Patel, press 2.", False),
    ]
    listen = only(out, Listen)
    assert listen.max_digits == 1
    assert "Doctor Patel" in listen.hints
    d.send(DtmfReceived("2"))
    assert d.engine.variables["slot"] == "s2"
    assert d.step == "booked"


def test_options_are_matched_by_speech() -> None:
    d = Driver(flow_from_yaml(SLOTS))
    d.start()
    d.send(WebhookResult(200, AVAILABLE))
    d.send(SpeechRecognized("the nine o'clock one"))
    assert d.engine.variables["slot"] == "s1"
    d = Driver(flow_from_yaml(SLOTS))
    d.start()
    d.send(WebhookResult(200, AVAILABLE))
    d.send(SpeechRecognized("with doctor Patel please"))
    assert d.engine.variables["slot"] == "s2"


def test_an_empty_list_goes_to_empty_and_a_repeat_reads_the_options_again() -> None:
    d = Driver(flow_from_yaml(SLOTS))
    d.start()
    d.send(WebhookResult(200, {"available": []}))
    assert d.step == "none_left"
    d = Driver(flow_from_yaml(SLOTS))
    d.start()
    d.send(WebhookResult(200, AVAILABLE))
    assert len(only(d.send(SpeechRecognized("say that again")), Play).segments) == 3


def test_options_from_something_that_is_no_list_take_the_error_path() -> None:
    d = Driver(flow_from_yaml(SLOTS))
    d.start()
    out = d.send(WebhookResult(200, {"available": "none"}))
    assert any(isinstance(a, HangupCall) for a in out)
    assert "options.from must give a list" in d.engine._last["error"]


HOURS = """
name: line
start: route
settings: {timezone: Europe/London}
hours:
  office:
    open: {mon-fri: "08:00-18:00", sat: "09:00-12:00"}
    closed:
      - 2026-12-25
      - {date: 2026-12-24, hours: "08:00-12:00", name: Christmas Eve}
steps:
  route:
    branch:
      - if: hours.office.open
        next: open
    else: closed
  open:
    say: "We're open until {{ hours.office.closes_at }}. It is {{ now.time }} on {{ now.weekday }}."
    next: bye
  closed:
    say: "We're closed{% if hours.office.holiday %} ({{ hours.office.holiday }}){% endif %}. We open {{ hours.office.next_open | say_date }} at {{ hours.office.next_open.time }}."
    next: bye
  bye:
    hangup:
"""


def test_business_hours_route_by_the_event_time() -> None:
    d = Driver(flow_from_yaml(HOURS))
    assert played(d.start(now=MONDAY_9AM_LONDON)) == ["We're open until 18:00. It is 09:00 on mon."]
    d = Driver(flow_from_yaml(HOURS))
    assert played(d.start(now=SATURDAY_NOON)) == ["We're closed. We open Monday, December 7, 2026 at 08:00."]
    d = Driver(flow_from_yaml(HOURS))
    assert played(d.start(now=CHRISTMAS_10AM)) == [
        "We're closed (closed). We open Saturday, December 26, 2026 at 09:00."
    ]


def test_special_hours_and_call_started() -> None:
    flow = flow_from_yaml(
        HOURS.replace("It is {{ now.time }}", "Call began {{ call.started.time }}, now {{ now.time }}")
    )
    eve_11am = dt.datetime(2026, 12, 24, 11, 0, tzinfo=dt.UTC).timestamp()
    d = Driver(flow)
    d.start(now=eve_11am, started_at=eve_11am - 120)
    assert played(d.actions) == ["We're open until 12:00. Call began 10:58, now 11:00 on thu."]


def test_holidays_from_an_included_file(tmp_path) -> None:
    from ivr.flow.loader import load_library
    from ivr.flow.validate import validate_file

    (tmp_path / "holidays.yaml").write_text("- 2026-12-07\n- {date: 2026-12-08, name: Staff day}\n")
    eve = '      - {date: 2026-12-24, hours: "08:00-12:00", name: Christmas Eve}\n'
    text = HOURS.replace(eve, eve + "    include: [holidays.yaml]\n")
    (tmp_path / "line.yaml").write_text(text)
    library = load_library(tmp_path / "line.yaml")
    d = Driver(library)
    assert played(d.start(now=MONDAY_9AM_LONDON))[0].startswith("We're closed (closed). We open Wednesday")
    (tmp_path / "holidays.yaml").write_text("- not a date\n")
    report = validate_file(tmp_path / "line.yaml")
    assert [i.message for i in report.errors] == [
        "holidays.yaml: entry 0.date: Value error, 'not a date' is not a date; expected YYYY-MM-DD"
    ]
    assert report.errors[0].line == text.splitlines().index("    include: [holidays.yaml]") + 1


VOICEMAIL = """
name: vm
start: prompt
steps:
  prompt:
    say: Leave a message after the tone.
    next: rec
  rec:
    record: {max_ms: 30000, end_silence_ms: 2000}
    save: message
    next: thanks
    on_error: sorry
  thanks:
    say: "Thanks, {{ message.duration_s }} seconds."
    next: bye
  sorry:
    say: Sorry.
    next: bye
  bye:
    hangup:
"""


def test_record_step_asks_the_runtime_and_saves_what_came_back() -> None:
    from ivr.flow.events import PromptFinished

    d = Driver(flow_from_yaml(VOICEMAIL))
    d.start()
    record = only(d.send(PromptFinished()), Record)
    assert (record.max_ms, record.end_silence_ms, record.end_key, record.beep) == (30000, 2000, "#", True)
    assert record.name == "vm-rec"
    d.send(DtmfReceived("5"))  # keys while recording are the runtime's business
    out = d.send(RecordingFinished(12_340, "key", "/var/lib/ivr/recordings/c1-vm-rec.wav"))
    assert played(out) == ["Thanks, 12.34 seconds."]
    assert d.engine.variables["message"] == {"duration_s": 12.34, "ended_by": "key", "kept": True}
    (entry,) = d.engine.recordings
    assert (entry.step, entry.path) == ("rec", "/var/lib/ivr/recordings/c1-vm-rec.wav")


def test_record_failure_takes_on_error_and_hangup_ends() -> None:
    from ivr.flow.events import PromptFinished

    d = Driver(flow_from_yaml(VOICEMAIL))
    d.start()
    d.send(PromptFinished())
    d.send(RecordingFailed("no recordings directory"))
    assert d.step == "sorry"
    d = Driver(flow_from_yaml(VOICEMAIL))
    d.start()
    d.send(PromptFinished())
    assert isinstance(d.send(Hangup())[-1], End)


def test_a_sensitive_recording_keeps_no_path() -> None:
    from ivr.flow.events import PromptFinished

    d = Driver(
        flow_from_yaml(VOICEMAIL.replace("end_silence_ms: 2000}", "end_silence_ms: 2000, sensitive: true}"))
    )
    d.start()
    d.send(PromptFinished())
    d.send(RecordingFinished(5000, "silence", None))
    assert d.engine.variables["message"]["kept"] is False
    assert d.engine.recordings[0].path is None


BILINGUAL = """
name: bi
start: pick
settings:
  language: en-US
  languages:
    fr-FR: {voice: nova, tts: openai}
  no_input_prompt: {en: "Sorry?", fr: "Pardon ?"}
  no_match_prompt: {en: "Sorry, again?", fr: "Encore ?"}
  invalid_prompt: {en: "Not valid.", fr: "Pas valide."}
  confirm_prompt: {en: "{{ heard }}?", fr: "{{ heard }} ?"}
  option_prompt: {en: "{{ label }}: {{ key }}.", fr: "{{ label }} : {{ key }}."}
  filler: {en: One moment., fr: Un instant.}
steps:
  pick:
    ask:
      en: For English press 1. Pour le français, appuyez sur le 2.
      fr: Pour le français, appuyez sur le 2.
    choices:
      english: {phrases: {en: [english], fr: [anglais]}, dtmf: "1", next: to_en}
      french: {phrases: {en: [french], fr: [français, francais]}, dtmf: "2", next: to_fr}
  to_en:
    language: en-US
    next: when
  to_fr:
    language: fr
    next: when
  when:
    ask: {en: "Which day?", fr: "Quel jour ?"}
    capture: {slot: day, type: date}
    next: bye
  bye:
    hangup:
"""


def test_a_language_menu_switches_texts_voice_and_recognition() -> None:
    d = Driver(flow_from_yaml(BILINGUAL))
    d.start(now=MONDAY_9AM_LONDON)
    out = d.send(DtmfReceived("2"))
    play, listen = only(out, Play), only(out, Listen)
    assert (play.text, play.language, play.voice, play.tts) == ("Quel jour ?", "fr-FR", "nova", "openai")
    assert listen.language == "fr-FR"
    assert played(d.send(NoInput())) == ["Pardon ? Quel jour ?"]
    d.send(SpeechRecognized("demain"))
    assert d.engine.variables["day"] == "2026-12-08"
    assert d.engine.language == "fr-FR"


def test_the_dialplan_chooses_the_language() -> None:
    d = Driver(flow_from_yaml(BILINGUAL))
    out = d.start(args={"language": "fr-FR"})
    assert played(out) == ["Pour le français, appuyez sur le 2."]
    d = Driver(flow_from_yaml(BILINGUAL))
    out = d.start(language="de-DE")
    assert played(out)[0].startswith("For English")
    assert any(isinstance(a, Log) and "not one the flow speaks" in a.message for a in out)


def test_prerender_lists_every_fixed_text_in_every_language() -> None:
    texts = {(t.language, t.text) for t in fixed_texts(flow_from_yaml(BILINGUAL))}
    assert ("fr-FR", "Pardon ?") in texts
    assert ("en-US", "Sorry?") in texts
    assert ("fr-FR", "Quel jour ?") in texts
    assert ("fr-FR", "Un instant.") in texts
    assert not [t for _, t in texts if "{{" in t]
    menu = {t.text for t in fixed_texts(flow_from_yaml(MENU))}
    assert {"Still there?", "Hello?", "Sorry, I didn't hear anything.", "Sales or support?"} <= menu


def test_webhook_filler_in_the_calls_language() -> None:
    flow = flow_from_yaml(
        BILINGUAL.replace(
            "  to_fr:\n    language: fr\n    next: when",
            "  to_fr:\n    language: fr\n    next: hook\n  hook:\n    webhook: {url: 'https://x.example.com/'}\n    next: when",
        )
    )
    d = Driver(flow)
    d.start()
    request = only(d.send(DtmfReceived("2")), HttpRequest)
    assert request.filler == "Un instant."


def test_the_graph_draws_record_language_and_options() -> None:
    from ivr.flow.graph import to_dot, to_mermaid
    from ivr.flow.loader import load_library

    from .helpers import FLOWS_DIR

    outage = load_library(FLOWS_DIR / "outage.yaml").main
    mermaid = to_mermaid(outage)
    assert 's_voicemail[("voicemail<br/>record")]' in mermaid
    assert 's_voicemail -->|"recorded"| s_after_message' in mermaid
    assert "ask alphanumeric" in mermaid
    clinic = load_library(FLOWS_DIR / "clinic.yaml").main
    dot = to_dot(clinic)
    assert 's_pick_slot -> s_confirm_booking [label="option [1-9]"]' in dot
    assert 's_pick_slot -> s_no_slots [label="no options"]' in dot
    assert 's_in_french [label="in_french\\nlanguage fr-FR", shape=box]' in dot
