import numpy as np
import pytest

from ivr.media import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode

from .audio import level_dbfs, pcm, samples, tone

ALL_CODES = bytes(range(256))
ALL_PCM = np.arange(-32768, 32768, dtype="<i2").tobytes()


def decoded(fn, codes: bytes) -> list[int]:
    return [int(v) for v in samples(fn(codes))]


def test_ulaw_known_values():
    assert decoded(ulaw_decode, bytes([0xFF, 0x00, 0x80, 0x7F, 0xF0, 0x70])) == [
        0,
        -32124,
        32124,
        0,
        120,
        -120,
    ]
    assert ulaw_encode(pcm(np.array([0.0, 32767, -32768, 100, -100]))) == bytes(
        [0xFF, 0x80, 0x00, 0xF2, 0x72]
    )


def test_alaw_known_values():
    assert decoded(alaw_decode, bytes([0xD5, 0x55, 0xAA, 0x2A])) == [8, -8, 32256, -32256]
    assert alaw_encode(pcm(np.array([0.0, -1, 32767, -32768]))) == bytes([0xD5, 0x55, 0xAA, 0x2A])


def test_every_code_survives_decode_then_encode():
    assert alaw_encode(alaw_decode(ALL_CODES)) == ALL_CODES
    expected = bytearray(ALL_CODES)
    expected[0x7F] = 0xFF  # mu-law has two zeros; negative zero encodes back as positive zero
    assert ulaw_encode(ulaw_decode(ALL_CODES)) == bytes(expected)


@pytest.mark.parametrize(
    ("encode", "decode", "top"), [(ulaw_encode, ulaw_decode, 32124), (alaw_encode, alaw_decode, 32256)]
)
def test_round_trip_error_is_bounded_and_monotonic(encode, decode, top):
    x = samples(ALL_PCM).astype(np.int64)
    y = samples(decode(encode(ALL_PCM))).astype(np.int64)
    assert np.all(np.diff(y) >= 0)  # quantiser never reorders samples
    inside = np.abs(x) <= top
    err = np.abs(y - x)[inside]
    # logarithmic quantiser: error within half a step, a step being 1/16 of the segment (~1/32 of |x|)
    assert np.all(err <= np.abs(x[inside]) / 30 + 16)
    assert np.abs(y[~inside]).max() <= 32767
    assert np.all(np.abs(y[~inside]) >= top)


@pytest.mark.parametrize(("encode", "decode"), [(ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)])
def test_speech_level_tone_keeps_g711_snr(encode, decode):
    x = samples(pcm(tone(1000, 0.5, 8000, dbfs=-20)))
    enc = encode(x.tobytes())
    assert len(enc) == x.size
    y = samples(decode(enc))
    assert level_dbfs(x) - level_dbfs(y.astype(np.float64) - x) > 33


def test_odd_pcm_length_is_rejected():
    with pytest.raises(ValueError, match="16-bit"):
        ulaw_encode(b"\x00\x00\x00")
