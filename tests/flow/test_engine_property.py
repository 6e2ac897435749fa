"""Random event sequences never leave the engine stuck: after every event it has ended or is waiting
for the answer to an action it emitted, and it never raises."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

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
from ivr.flow.loader import FlowLibrary, load_library

from .helpers import FLOWS_DIR, Driver

LIBRARIES: dict[str, FlowLibrary] = {
    name: load_library(FLOWS_DIR / f"{name}.yaml") for name in ("bank", "pizza", "reminder")
}
WORDS = [
    "yes",
    "no",
    "balance",
    "operator",
    "repeat",
    "two",
    "order",
    "family",
    "thin",
    "one two three",
    "twenty",
    "morning",
    "start over",
    "",
    "uh",
    "1 2 3 4 5 6 7 8",
    "transactions",
    "goodbye",
    "status",
]
BODIES = st.one_of(
    st.none(),
    st.text(max_size=5),
    st.fixed_dictionaries(
        {
            "ok": st.booleans(),
            "available": st.floats(-1e6, 1e6),
            "id": st.text(max_size=4),
            "time": st.text(max_size=8),
            "status": st.text(max_size=8),
            "eta_minutes": st.integers(),
        }
    ),
)

EVENTS: st.SearchStrategy[Event] = st.one_of(
    st.just(PromptFinished()),
    st.just(BargeIn()),
    st.just(NoInput()),
    st.just(DigitTimeout()),
    st.builds(SpeechRecognized, st.sampled_from(WORDS) | st.text(max_size=20), st.floats(0, 1)),
    st.builds(DtmfReceived, st.sampled_from(list("0123456789*#"))),
    st.builds(ClassificationResult, st.sampled_from([None, "order", "status", "staff", "repeat", "bogus"])),
    st.builds(WebhookResult, st.sampled_from([200, 201, 204, 404, 500]), BODIES),
    st.builds(WebhookFailed, st.sampled_from(["timeout", "connection refused"])),
    st.just(TransferCompleted()),
    st.builds(TransferFailed, st.sampled_from(["busy", "no_answer", "timeout", "failed"])),
    st.builds(ProviderError, st.sampled_from(["stt", "tts", "llm", "media"])),
    st.just(Hangup()),
    st.builds(CallStarted, st.just("again")),
)


@settings(deadline=None, max_examples=300)
@given(
    flow=st.sampled_from(sorted(LIBRARIES)),
    events=st.lists(EVENTS, max_size=60),
    hangup_weight=st.integers(0, 3),
)
def test_random_events_never_leave_the_engine_without_a_next_action(
    flow: str, events: list[Event], hangup_weight: int
) -> None:
    d = Driver(LIBRARIES[flow], BANK_API_TOKEN="t", PIZZA_API_KEY="k", CLINIC_TOKEN="c")
    d.start(caller_id="+15550100", vars={"appointment_id": "a1"})
    for event in events:
        if isinstance(event, Hangup) and hangup_weight == 0:
            continue  # keep most runs going long enough to explore the flow
        d.send(event)  # Driver.send asserts the invariants after every event
    assert d.engine.finished or d.engine.waiting_for != "start"
    for entry in d.engine.transcript:
        if entry.step == "ask_pin" and entry.speaker == "caller":  # bank's sensitive PIN
            assert entry.text in ("[redacted]", "DTMF [redacted]"), entry


@settings(deadline=None, max_examples=100)
@given(events=st.lists(EVENTS, max_size=40))
def test_a_pure_engine_replays_identically(events: list[Event]) -> None:
    outputs = []
    for _ in range(2):
        d = Driver(LIBRARIES["pizza"], PIZZA_API_KEY="k")
        out = d.start()
        for event in events:
            out = out + d.send(event)
        outputs.append((out, d.engine.path, d.engine.transcript))
    assert outputs[0] == outputs[1]
