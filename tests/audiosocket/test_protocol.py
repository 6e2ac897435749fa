"""Codec tests: every kind round-trips, the decoder handles any fragmentation, captures replay exactly."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from ivr.audiosocket.protocol import (
    AUDIO_RATES,
    Audio,
    Dtmf,
    Error,
    ErrorCode,
    FrameDecoder,
    Hangup,
    Kind,
    ProtocolError,
    Unknown,
    Uuid,
    audio_header,
    encode_audio,
    encode_dtmf,
    encode_error,
    encode_hangup,
    encode_uuid,
    frame_bytes,
    rate_for_format,
)

FIXTURES = Path(__file__).parent / "fixtures"
CALL_ID = uuid.UUID("30119f21-3933-4caa-a57a-b48292060acb")


def test_header_layout_is_kind_then_big_endian_length() -> None:
    assert encode_audio(b"\x01\x02" * 160, 8000)[:3] == b"\x10\x01\x40"
    assert encode_uuid(CALL_ID) == b"\x01\x00\x10" + CALL_ID.bytes
    assert encode_dtmf("#") == b"\x03\x00\x01#"
    assert encode_hangup() == b"\x00\x00\x00"
    assert encode_error() == b"\xff\x00\x00"
    assert encode_error(ErrorCode.MEMORY) == b"\xff\x00\x01\x04"


@pytest.mark.parametrize(("kind", "rate"), sorted(AUDIO_RATES.items()))
def test_every_audio_kind_round_trips(kind: int, rate: int) -> None:
    payload = bytes(range(256)) * 2 + b"\x00\x01"
    wire = encode_audio(payload, rate)
    assert wire[0] == kind
    [frame] = FrameDecoder().feed(wire)
    assert frame == Audio(rate, payload)


def test_control_kinds_round_trip() -> None:
    wire = (
        encode_uuid(CALL_ID)
        + b"".join(encode_dtmf(d) for d in "0123456789*#ABCD")
        + encode_error(ErrorCode.FRAME_FORWARDING)
        + encode_error()
        + encode_hangup()
    )
    frames = FrameDecoder().feed(wire)
    assert frames[0] == Uuid(CALL_ID)
    assert [f.digit for f in frames[1:17] if isinstance(f, Dtmf)] == list("0123456789*#ABCD")
    assert frames[17:] == [Error(ErrorCode.FRAME_FORWARDING), Error(None), Hangup()]


def test_formats_map_to_rates_and_kinds() -> None:
    assert rate_for_format("slin") == 8000
    assert rate_for_format("slin16") == 16000
    assert audio_header(16000, 640) == bytes((Kind.SLIN_16K, 0x02, 0x80))
    assert frame_bytes(8000) == 320
    assert frame_bytes(16000) == 640
    with pytest.raises(ValueError, match="ulaw"):
        rate_for_format("ulaw")


def test_encoders_refuse_what_asterisk_would_hang_up_on() -> None:
    with pytest.raises(ValueError, match="outside"):
        encode_audio(b"", 8000)
    with pytest.raises(ValueError, match="DTMF"):
        encode_dtmf("E")
    with pytest.raises(ValueError, match="sample rate"):
        encode_audio(b"\x00\x00", 11025)


def test_payloads_are_zero_copy_when_whole_in_one_read() -> None:
    data = encode_audio(b"\x07\x00" * 160, 8000) * 2
    frames = FrameDecoder().feed(data)
    assert all(isinstance(f, Audio) and isinstance(f.payload, memoryview) for f in frames)


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (b"\x01\x00\x0f" + bytes(15), "UUID payload must be 16 bytes"),
        (b"\x03\x00\x02" + b"12", "DTMF payload must be one byte"),
        (b"\x03\x00\x01" + b"x", "invalid DTMF digit"),
        (b"\x12\x00\x03" + bytes(3), "odd-length audio"),
        (b"\x10\x40\x02", "larger than the 16384-byte cap"),
    ],
)
def test_malformed_messages_raise_protocol_error(wire: bytes, message: str) -> None:
    good = encode_audio(bytes(320), 8000)
    with pytest.raises(ProtocolError, match=message) as info:
        FrameDecoder().feed(good + wire)
    err = info.value
    assert err.kind == wire[0]
    assert err.offset == len(good)
    assert err.length == int.from_bytes(wire[1:3], "big")
    assert [type(f) for f in err.frames] == [Audio], "frames before the bad one are kept"


def test_oversize_length_is_refused_from_the_header_alone() -> None:
    decoder = FrameDecoder(max_payload=1000)
    assert decoder.feed(b"\x10\x03") == []
    with pytest.raises(ProtocolError, match="1000-byte cap"):
        decoder.feed(b"\xe9")  # header complete: 1001 bytes announced, no payload needed to refuse
    with pytest.raises(RuntimeError, match="out of sync"):
        decoder.feed(b"\x00")


def test_unknown_kind_is_reported_not_fatal() -> None:
    frames = FrameDecoder().feed(b"\x42\x00\x02ab" + encode_hangup())
    assert isinstance(frames[0], Unknown)
    assert frames[0].kind == 0x42
    assert bytes(frames[0].payload) == b"ab"
    assert frames[1] == Hangup()


def _stream() -> bytes:
    return (
        encode_uuid(CALL_ID)
        + encode_audio(bytes(range(256)) * 5, 16000)
        + encode_dtmf("5")
        + b"\x42\x00\x00"
        + encode_audio(b"\x01\x80" * 160, 8000)
        + encode_error(1)
        + encode_hangup()
    )


def test_decoder_at_every_split_point() -> None:
    stream = _stream()
    expected = FrameDecoder().feed(stream)
    for split in range(len(stream) + 1):
        decoder = FrameDecoder()
        frames = decoder.feed(stream[:split]) + decoder.feed(stream[split:])
        assert frames == expected, split
        assert decoder.buffered == 0
        assert decoder.offset == len(stream)


def test_decoder_one_byte_at_a_time() -> None:
    stream = _stream()
    decoder = FrameDecoder()
    frames = [f for i in range(len(stream)) for f in decoder.feed(stream[i : i + 1])]
    assert frames == FrameDecoder().feed(stream)


def _replay(name: str, chunk: int) -> list[object]:
    data = (FIXTURES / name).read_bytes()
    decoder = FrameDecoder()
    frames: list[object] = []
    for i in range(0, len(data), chunk):
        frames.extend(decoder.feed(data[i : i + chunk]))
    assert decoder.buffered == 0
    return frames


@pytest.mark.parametrize(
    ("name", "call_id", "rate", "size"),
    [
        ("as-slin16.bin", "30119f21-3933-4caa-a57a-b48292060acb", 16000, 640),
        ("as-slin.bin", "5d6784b6-5980-41ca-80ac-281d1ff78f03", 8000, 320),
    ],
)
@pytest.mark.parametrize("chunk", [1, 7, 643, 4096, 1 << 20])
def test_real_asterisk_captures_replay_exactly(
    name: str, call_id: str, rate: int, size: int, chunk: int
) -> None:
    frames = _replay(name, chunk)
    assert frames[0] == Uuid(uuid.UUID(call_id))
    audio = [f for f in frames if isinstance(f, Audio)]
    dtmf = [f.digit for f in frames if isinstance(f, Dtmf)]
    assert len(audio) == 135
    assert {(a.rate, len(a.payload)) for a in audio} == {(rate, size)}
    assert dtmf == ["1", "2", "3", "#"]
    assert len(frames) == 1 + 135 + 4, "no hangup message: Asterisk closes the socket instead"
