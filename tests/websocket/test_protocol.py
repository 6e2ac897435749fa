"""The chan_websocket codec: every command and event in both forms, byte for byte as Asterisk 22.10.1."""

from __future__ import annotations

import pytest

from ivr.websocket.protocol import (
    COMMANDS,
    EVENTS,
    MAX_COMMAND_BYTES,
    QUEUE_MAX,
    XOFF_LEVEL,
    XON_LEVEL,
    Command,
    ControlForm,
    DtmfEnd,
    ErrorEvent,
    MediaBufferingCompleted,
    MediaMarkProcessed,
    MediaStart,
    MediaXoff,
    MediaXon,
    ProtocolError,
    QueueDrained,
    Status,
    UnknownEvent,
    decode_command,
    decode_event,
    encode_command,
    encode_event,
)

PLAIN, JSON = ControlForm.PLAIN, ControlForm.JSON

# Texts a real Asterisk 22.10.1 sent (tests/websocket/test_real_asterisk.py provokes each of them).
REAL_PLAIN = {
    "MEDIA_START connection_id:1f380ef7-fd40-4b3e-9a01-589bfc6de8a4 channel:WebSocket/INCOMING/0x7fe5c800c550 "
    "channel_id:media-1 format:slin16 optimal_frame_size:640 ptime:20": MediaStart(
        "1f380ef7-fd40-4b3e-9a01-589bfc6de8a4",
        "WebSocket/INCOMING/0x7fe5c800c550",
        "media-1",
        "slin16",
        640,
        20,
    ),
    "MEDIA_XOFF": MediaXoff(),
    "MEDIA_XON": MediaXon(),
    "QUEUE_DRAINED": QueueDrained(),
    "MEDIA_MARK_PROCESSED probe": MediaMarkProcessed("probe"),
    "MEDIA_MARK_PROCESSED": MediaMarkProcessed(""),
    "MEDIA_MARK_PROCESSED  spaced id": MediaMarkProcessed(" spaced id"),
    "MEDIA_BUFFERING_COMPLETED abc": MediaBufferingCompleted("abc"),
    "DTMF_END digit:5 channel_id:media-1": DtmfEnd("5", "media-1"),
    "STATUS channel_id:media-1 queue_length:975 xon_level:800 xoff_level:900 queue_full:true bulk_media:false "
    "media_paused:false": Status(975, 800, 900, True, False, False, "media-1"),
    "ERROR channel_id:media-1 error_text:SET_MEDIA_DIRECTION only supports JSON format.": ErrorEvent(
        "SET_MEDIA_DIRECTION only supports JSON format.", "media-1"
    ),
}
REAL_JSON = {
    '{"event":"MEDIA_START","connection_id":"wsm-good","channel":"WebSocket/wsm-good/0x7fe5c4002a60",'
    '"channel_id":"media-2","format":"slin16","optimal_frame_size":640,"ptime":20,"channel_variables":'
    '{"MEDIA_WEBSOCKET_CONNECTION_ID":"wsm-good","MEDIA_WEBSOCKET_OPTIMAL_FRAME_SIZE":"640"}}': MediaStart(
        "wsm-good",
        "WebSocket/wsm-good/0x7fe5c4002a60",
        "media-2",
        "slin16",
        640,
        20,
        {"MEDIA_WEBSOCKET_CONNECTION_ID": "wsm-good", "MEDIA_WEBSOCKET_OPTIMAL_FRAME_SIZE": "640"},
        JSON,
    ),
    '{"event":"MEDIA_XOFF","channel_id":"media-2"}': MediaXoff("media-2"),
    '{"event":"MEDIA_XON","channel_id":"media-2"}': MediaXon("media-2"),
    '{"event":"QUEUE_DRAINED","channel_id":"media-2"}': QueueDrained("media-2"),
    '{"event":"MEDIA_MARK_PROCESSED","channel_id":"media-2","correlation_id":"p1"}': MediaMarkProcessed(
        "p1", "media-2"
    ),
    '{"event":"MEDIA_MARK_PROCESSED","channel_id":"media-2","correlation_id":""}': MediaMarkProcessed(
        "", "media-2"
    ),
    '{"event":"MEDIA_BUFFERING_COMPLETED","channel_id":"media-2","correlation_id":"sb"}': (
        MediaBufferingCompleted("sb", "media-2")
    ),
    '{"event":"DTMF_END","channel_id":"media-2","digit":"7"}': DtmfEnd("7", "media-2"),
    '{"event":"STATUS","channel_id":"media-2","queue_length":0,"xon_level":800,"xoff_level":900,'
    '"queue_full":false,"bulk_media":false,"media_paused":false}': Status(
        0, 800, 900, False, False, False, "media-2"
    ),
    '{"event":"ERROR","channel_id":"media-2","error_text":"Unable to parse JSON command"}': ErrorEvent(
        "Unable to parse JSON command", "media-2"
    ),
}


def test_flow_control_levels_are_asterisks() -> None:
    assert (QUEUE_MAX, XOFF_LEVEL, XON_LEVEL, MAX_COMMAND_BYTES) == (1000, 900, 800, 128)


@pytest.mark.parametrize(("text", "event"), list(REAL_PLAIN.items()))
def test_plain_text_events_decode_and_encode_byte_for_byte(text: str, event: object) -> None:
    assert decode_event(text) == event
    assert encode_event(decode_event(text), PLAIN) == text


@pytest.mark.parametrize(("text", "event"), list(REAL_JSON.items()))
def test_json_events_decode_and_encode_byte_for_byte(text: str, event: object) -> None:
    assert decode_event(text) == event
    assert encode_event(decode_event(text), JSON) == text


def test_every_event_of_the_table_has_both_forms_in_the_real_samples() -> None:
    assert {type(e) for e in REAL_PLAIN.values()} == {type(e) for e in REAL_JSON.values()}
    assert len({type(e) for e in REAL_PLAIN.values()}) == len(EVENTS)


def test_error_text_loses_the_newline_asterisk_appends() -> None:
    raw = '{"event":"ERROR","channel_id":"m","error_text":"SET_MEDIA_DIRECTION requires a \'direction\' parameter.\\n"}'
    event = decode_event(raw)
    assert isinstance(event, ErrorEvent)
    assert event.error_text.endswith("parameter.")
    plain = decode_event("ERROR channel_id:m error_text:'sideways' is not a valid direction.\n")
    assert plain == ErrorEvent("'sideways' is not a valid direction.", "m")


def test_media_start_before_22_7_has_no_channel_id() -> None:
    old = decode_event(
        "MEDIA_START connection_id:x channel:WebSocket/x/0x1 format:slin optimal_frame_size:320 ptime:20"
    )
    assert isinstance(old, MediaStart)
    assert old.channel_id is None
    assert old.optimal_frame_size == 320


def test_fields_of_a_later_asterisk_are_ignored_in_both_forms() -> None:
    assert decode_event("DTMF_END digit:1 channel_id:c duration:120") == DtmfEnd("1", "c")
    assert decode_event('{"event":"MEDIA_XON","channel_id":"c","level":3}') == MediaXon("c")


def test_unknown_events_are_not_errors() -> None:
    assert decode_event("MEDIA_PAUSED channel_id:x") == UnknownEvent(
        "MEDIA_PAUSED", "MEDIA_PAUSED channel_id:x"
    )
    text = '{"event":"SOMETHING_NEW","channel_id":"x"}'
    assert decode_event(text) == UnknownEvent("SOMETHING_NEW", text)


def test_dtmf_digits_are_normalised_and_checked() -> None:
    assert decode_event("DTMF_END digit:a channel_id:c") == DtmfEnd("A", "c")
    for digit in "0123456789*#ABCD":
        assert decode_event(f"DTMF_END digit:{digit}") == DtmfEnd(digit)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "empty"),
        ("media_start", "not an event"),
        ("MEDIA_START connection_id:x channel:c format:slin16 ptime:20", "optimal_frame_size missing"),
        (
            "MEDIA_START connection_id:x channel:c format:slin16 optimal_frame_size:6x0 ptime:20",
            "whole number",
        ),
        ("MEDIA_START connection_id:x channel:c format: optimal_frame_size:640 ptime:20", "empty format"),
        ("MEDIA_START connection_id:x channel:c format:slin16 optimal_frame_size:640 ptime:0", "ptime"),
        (
            "MEDIA_START connection_id:x connection_id:y channel:c format:slin16 optimal_frame_size:6 ptime:20",
            "twice",
        ),
        ("MEDIA_START connection_id", "key:value"),
        ("DTMF_END digit:12 channel_id:c", "digit"),
        ("DTMF_END digit:x", "digit"),
        ("DTMF_END channel_id:c", "digit missing"),
        (
            "STATUS channel_id:c queue_length:1 xon_level:800 xoff_level:900 queue_full:yes bulk_media:false "
            "media_paused:false",
            "true/false",
        ),
        ("ERROR channel_id:c", "error_text"),
        ("{", "invalid JSON"),
        ("[1, 2]", "not an event"),
        ("  [1]", "not an event"),
        ("{}", "'event'"),
        ('{"event": ""}', "'event'"),
        (
            '{"event":"MEDIA_START","connection_id":"x","channel":"c","format":"slin16","optimal_frame_size":"640",'
            '"ptime":20}',
            "non-negative integer",
        ),
        (
            '{"event":"MEDIA_START","connection_id":"x","channel":"c","format":"slin16","optimal_frame_size":true,'
            '"ptime":20}',
            "non-negative integer",
        ),
        (
            '{"event":"MEDIA_START","connection_id":"x","channel":"c","format":"slin16","optimal_frame_size":640,'
            '"ptime":20,"channel_variables":[]}',
            "object",
        ),
        (
            '{"event":"STATUS","queue_length":1,"xon_level":800,"xoff_level":900,"queue_full":1,"bulk_media":false,'
            '"media_paused":false}',
            "must be a boolean",
        ),
        ('{"event":"DTMF_END","digit":5}', "must be a string"),
        ("X" * 70000, "characters"),
    ],
)
def test_malformed_events_raise_a_specific_error(text: str, says: str) -> None:
    with pytest.raises(ProtocolError, match=says):
        decode_event(text)


# -- commands ---------------------------------------------------------------------------------------

COMMANDS_BOTH = [
    (Command("ANSWER"), "ANSWER", '{"command":"ANSWER"}'),
    (Command("HANGUP"), "HANGUP", '{"command":"HANGUP"}'),
    (Command("START_MEDIA_BUFFERING"), "START_MEDIA_BUFFERING", '{"command":"START_MEDIA_BUFFERING"}'),
    (Command("STOP_MEDIA_BUFFERING"), "STOP_MEDIA_BUFFERING", '{"command":"STOP_MEDIA_BUFFERING"}'),
    (
        Command("STOP_MEDIA_BUFFERING", "b1"),
        "STOP_MEDIA_BUFFERING b1",
        '{"command":"STOP_MEDIA_BUFFERING","correlation_id":"b1"}',
    ),
    (Command("MARK_MEDIA"), "MARK_MEDIA", '{"command":"MARK_MEDIA"}'),
    (Command("MARK_MEDIA", "17"), "MARK_MEDIA 17", '{"command":"MARK_MEDIA","correlation_id":"17"}'),
    (Command("FLUSH_MEDIA"), "FLUSH_MEDIA", '{"command":"FLUSH_MEDIA"}'),
    (Command("REPORT_QUEUE_DRAINED"), "REPORT_QUEUE_DRAINED", '{"command":"REPORT_QUEUE_DRAINED"}'),
    (Command("GET_STATUS"), "GET_STATUS", '{"command":"GET_STATUS"}'),
    (Command("PAUSE_MEDIA"), "PAUSE_MEDIA", '{"command":"PAUSE_MEDIA"}'),
    (Command("CONTINUE_MEDIA"), "CONTINUE_MEDIA", '{"command":"CONTINUE_MEDIA"}'),
]


@pytest.mark.parametrize(("command", "plain", "json_text"), COMMANDS_BOTH)
def test_commands_encode_as_asterisk_reads_them(command: Command, plain: str, json_text: str) -> None:
    assert encode_command(command, PLAIN) == plain
    assert encode_command(command, JSON) == json_text
    assert decode_command(plain) == command
    assert decode_command(json_text) == command


def test_every_command_of_the_table_is_covered() -> None:
    covered = {c.verb for c, _, _ in COMMANDS_BOTH} | {"SET_MEDIA_DIRECTION"}
    assert covered == set(COMMANDS)


def test_set_media_direction_is_json_only() -> None:
    for direction in ("both", "out", "in"):
        text = encode_command(Command("SET_MEDIA_DIRECTION", direction), JSON)
        assert text == f'{{"command":"SET_MEDIA_DIRECTION","direction":"{direction}"}}'
        assert decode_command(text) == Command("SET_MEDIA_DIRECTION", direction)
    with pytest.raises(ValueError, match="plain-text"):
        encode_command(Command("SET_MEDIA_DIRECTION", "both"), PLAIN)
    with pytest.raises(ValueError, match="one of"):
        Command("SET_MEDIA_DIRECTION", "sideways")
    with pytest.raises(ProtocolError, match="JSON form only"):
        decode_command("SET_MEDIA_DIRECTION both")


def test_commands_asterisk_would_ignore_or_mangle_are_refused() -> None:
    with pytest.raises(ValueError, match="128"):
        encode_command(Command("MARK_MEDIA", "x" * 120), PLAIN)
    with pytest.raises(ValueError, match="whitespace"):
        encode_command(Command("MARK_MEDIA", " padded"), PLAIN)
    with pytest.raises(ValueError, match="whitespace"):
        encode_command(Command("MARK_MEDIA", "two\nlines"), PLAIN)
    with pytest.raises(ValueError, match="unknown"):
        Command("DTMF", "1")
    with pytest.raises(ValueError, match="no argument"):
        Command("FLUSH_MEDIA", "now")


def test_decode_command_parses_as_chan_websocket_does() -> None:
    assert decode_command("  MARK_MEDIA  spaced id  ") == Command("MARK_MEDIA", " spaced id")
    assert decode_command("FLUSH_MEDIA and more") == Command("FLUSH_MEDIA")
    with pytest.raises(ProtocolError, match="unknown"):
        decode_command("BOGUS_CMD x")
    with pytest.raises(ProtocolError, match="128"):
        decode_command("x" * 129)
    with pytest.raises(ProtocolError, match="'command'"):
        decode_command('{"verb":"GET_STATUS"}')
    with pytest.raises(ProtocolError, match="invalid JSON"):
        decode_command("{not json")
    with pytest.raises(ProtocolError, match="must be a string"):
        decode_command('{"command":"MARK_MEDIA","correlation_id":5}')
