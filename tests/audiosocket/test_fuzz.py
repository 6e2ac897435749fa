"""Random and mutated byte streams may only ever raise ProtocolError from the decoder."""

from __future__ import annotations

import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.audiosocket.protocol import (
    FrameDecoder,
    ProtocolError,
    encode_audio,
    encode_dtmf,
    encode_hangup,
    encode_uuid,
)

VALID = (
    encode_uuid(uuid.UUID(int=7))
    + encode_audio(bytes(640), 16000)
    + encode_dtmf("9")
    + encode_audio(bytes(320), 8000)
    + encode_hangup()
)


def _decode(data: bytes, cuts: list[int]) -> None:
    decoder = FrameDecoder(max_payload=2048)
    points = sorted({min(c, len(data)) for c in cuts})
    start = 0
    try:
        for point in [*points, len(data)]:
            decoder.feed(data[start:point])
            start = point
    except ProtocolError:
        pass


@settings(deadline=None, max_examples=300)
@given(st.binary(max_size=4096), st.lists(st.integers(min_value=0, max_value=4096), max_size=8))
def test_random_bytes_raise_only_protocol_error(data: bytes, cuts: list[int]) -> None:
    _decode(data, cuts)


@settings(deadline=None, max_examples=300)
@given(
    st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), min_size=1, max_size=6),
    st.lists(st.integers(min_value=0, max_value=len(VALID)), max_size=6),
)
def test_mutated_valid_streams_raise_only_protocol_error(
    mutations: list[tuple[int, int]], cuts: list[int]
) -> None:
    data = bytearray(VALID)
    for index, value in mutations:
        data[index] = value
    _decode(bytes(data), cuts)
