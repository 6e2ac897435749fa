"""Random and mutated texts may only ever raise ProtocolError; typed messages survive a round trip."""

from __future__ import annotations

import contextlib
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.websocket.protocol import (
    COMMANDS,
    MEDIA_DIRECTIONS,
    Command,
    ControlForm,
    DtmfEnd,
    ErrorEvent,
    Event,
    MediaBufferingCompleted,
    MediaMarkProcessed,
    MediaStart,
    MediaXoff,
    MediaXon,
    ProtocolError,
    QueueDrained,
    Status,
    decode_command,
    decode_event,
    encode_command,
    encode_event,
)

TOKEN = st.text(
    st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=":"), min_size=1, max_size=24
)
IDS = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40)
NUM = st.integers(min_value=0, max_value=10**6)
CHANNEL = st.none() | TOKEN

SAMPLES = [
    "MEDIA_START connection_id:a channel:WebSocket/INCOMING/0x1 channel_id:m format:slin16 optimal_frame_size:640 "
    "ptime:20",
    "DTMF_END digit:5 channel_id:m",
    "STATUS channel_id:m queue_length:1 xon_level:800 xoff_level:900 queue_full:false bulk_media:false "
    "media_paused:false",
    "ERROR channel_id:m error_text:oops",
    "MEDIA_MARK_PROCESSED 12",
    '{"event":"MEDIA_START","connection_id":"a","channel":"c","channel_id":"m","format":"slin16",'
    '"optimal_frame_size":640,"ptime":20,"channel_variables":{"A":"b"}}',
    '{"event":"STATUS","channel_id":"m","queue_length":0,"xon_level":800,"xoff_level":900,"queue_full":false,'
    '"bulk_media":false,"media_paused":false}',
]


def _decodes_or_protocol_error(text: str) -> None:
    with contextlib.suppress(ProtocolError):
        decode_event(text)


@settings(deadline=None, max_examples=400)
@given(st.text(max_size=300))
def test_any_text_decodes_or_raises_protocol_error(text: str) -> None:
    _decodes_or_protocol_error(text)


@settings(deadline=None, max_examples=400)
@given(st.sampled_from(SAMPLES), st.integers(0, 400), st.integers(0, 40), st.text(max_size=8))
def test_mutated_real_events_decode_or_raise_protocol_error(
    sample: str, at: int, cut: int, insert: str
) -> None:
    at = min(at, len(sample))
    _decodes_or_protocol_error(sample[:at] + insert + sample[at + cut :])


@settings(deadline=None, max_examples=200)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda c: st.lists(c) | st.dictionaries(st.text(max_size=5), c),
        max_leaves=10,
    )
)
def test_any_json_value_decodes_or_raises_protocol_error(value: object) -> None:
    _decodes_or_protocol_error(json.dumps(value))
    _decodes_or_protocol_error(json.dumps({"event": "MEDIA_START", "x": value}))


def _events() -> st.SearchStrategy[Event]:
    return st.one_of(
        st.builds(MediaStart, TOKEN, TOKEN, CHANNEL, TOKEN, NUM, st.integers(1, 1000)),
        st.builds(MediaXoff),
        st.builds(MediaXon),
        st.builds(QueueDrained),
        st.builds(MediaMarkProcessed, IDS),
        st.builds(MediaBufferingCompleted, IDS),
        st.builds(DtmfEnd, st.sampled_from("0123456789*#ABCD"), CHANNEL),
        st.builds(Status, NUM, NUM, NUM, st.booleans(), st.booleans(), st.booleans(), CHANNEL),
        st.builds(ErrorEvent, IDS, CHANNEL),
    )


@settings(deadline=None, max_examples=300)
@given(_events())
def test_events_survive_the_plain_round_trip(event: Event) -> None:
    assert decode_event(encode_event(event, ControlForm.PLAIN)) == event


@settings(deadline=None, max_examples=300)
@given(_events(), TOKEN)
def test_events_survive_the_json_round_trip(event: Event, channel_id: str) -> None:
    # The JSON form always carries channel_id (and MEDIA_START its variables): compare what it carries.
    decoded = decode_event(encode_event(event, ControlForm.JSON))
    assert type(decoded) is type(event)
    assert encode_event(decoded, ControlForm.JSON) == encode_event(event, ControlForm.JSON)


@settings(deadline=None, max_examples=300)
@given(
    st.sampled_from(sorted(COMMANDS)),
    st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=30),
    st.sampled_from(ControlForm),
)
def test_commands_survive_the_round_trip(verb: str, argument: str, form: ControlForm) -> None:
    spec = COMMANDS[verb]
    if verb == "SET_MEDIA_DIRECTION":
        argument = MEDIA_DIRECTIONS[len(argument) % 3]
        form = ControlForm.JSON
    command = Command(verb, argument if spec.fields else None)
    assert decode_command(encode_command(command, form)) == command
