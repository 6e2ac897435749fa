import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.media import ResampleStream, frame_bytes, resample

from .audio import level_dbfs, pcm, samples, tone

PAIRS = [
    (24000, 8000),
    (24000, 16000),
    (16000, 8000),
    (8000, 16000),
    (8000, 24000),
    (16000, 24000),
    (22050, 8000),
    (44100, 16000),
]


def stream_in_chunks(r: ResampleStream, data: bytes, seed: int = 0, max_chunk: int = 3001) -> list[bytes]:
    """Push ``data`` in random uneven (often odd-length) chunks, then flush."""
    rng = np.random.default_rng(seed)
    out: list[bytes] = []
    pos = 0
    while pos < len(data):
        k = int(rng.integers(1, max_chunk))
        out += r.push(data[pos : pos + k])
        pos += k
    return out + r.flush()


@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS)
def test_frames_are_exact_and_all_samples_delivered(in_rate, out_rate):
    data = pcm(tone(440, 1.37, in_rate))
    out = stream_in_chunks(ResampleStream(in_rate, out_rate), data)
    size = frame_bytes(out_rate)
    assert all(len(f) == size for f in out[:-1])
    assert 0 < len(out[-1]) <= size
    got = sum(len(f) for f in out) // 2
    expected = len(data) // 2 * out_rate / in_rate
    assert abs(got - expected) <= 2


def test_odd_chunking_gives_same_audio_as_one_shot():
    data = pcm(tone(700, 0.5, 24000))
    one_byte = b"".join(stream_in_chunks(ResampleStream(24000, 8000), data, max_chunk=2))
    odd = b"".join(stream_in_chunks(ResampleStream(24000, 8000), data, seed=3, max_chunk=97))
    ref = resample(data, 24000, 8000)
    assert len(one_byte) == len(odd) == len(ref)
    # soxr's block processing may differ by rounding only: the samples are not shifted or lost.
    assert np.abs(samples(one_byte).astype(int) - samples(ref)).max() <= 2
    assert np.abs(samples(odd).astype(int) - samples(ref)).max() <= 2


def first_frame_lag_ms(in_rate: int, out_rate: int) -> int:
    """Input milliseconds fed (in 20 ms chunks) before the first whole output frame appears."""
    r = ResampleStream(in_rate, out_rate)
    chunk = in_rate // 50 * 2
    data = pcm(tone(440, 1.0, in_rate))
    for i in range(0, len(data), chunk):
        if r.push(data[i : i + chunk]):
            return (i + chunk) // 2 * 1000 // in_rate
    raise AssertionError("no output before flush")


@pytest.mark.parametrize(
    ("in_rate", "out_rate", "documented_ms"),
    [(24000, 8000, 80), (24000, 16000, 40), (8000, 16000, 120), (16000, 24000, 40)],
)
def test_startup_lag_is_within_documented_bound(in_rate, out_rate, documented_ms):
    assert first_frame_lag_ms(in_rate, out_rate) <= documented_ms


def test_output_is_time_aligned_with_input():
    """No priming offset: a click at 100 ms comes out at 100 ms."""
    x = np.zeros(24000)
    x[2400] = 20000.0
    out = samples(b"".join(stream_in_chunks(ResampleStream(24000, 8000), pcm(x))))
    assert abs(int(np.argmax(np.abs(out))) - 800) <= 1


def test_six_khz_tone_is_filtered_out_when_downsampling_to_8k():
    """6 kHz is above the 4 kHz Nyquist of 8 kHz: it must not alias down to 2 kHz."""
    x = tone(6000, 1.0, 24000, dbfs=-6)
    out = samples(b"".join(stream_in_chunks(ResampleStream(24000, 8000), pcm(x))))
    body = out[400:-400]  # skip filter edges
    assert level_dbfs(x) - level_dbfs(body) > 40


@pytest.mark.parametrize(
    ("in_rate", "out_rate"), [(24000, 8000), (24000, 16000), (8000, 24000), (8000, 16000)]
)
def test_one_khz_tone_passes_with_right_frequency_and_level(in_rate, out_rate):
    x = tone(1000, 1.0, in_rate, dbfs=-12)
    out = samples(b"".join(stream_in_chunks(ResampleStream(in_rate, out_rate), pcm(x))))[:out_rate]
    spectrum = np.abs(np.fft.rfft(out * np.hanning(out.size)))
    peak_hz = float(np.argmax(spectrum)) * out_rate / out.size
    assert abs(peak_hz - 1000) <= 1
    assert abs(level_dbfs(out[200:-200]) - level_dbfs(x)) < 0.5


def test_same_rate_is_a_passthrough():
    r = ResampleStream(8000, 8000)
    assert r.passthrough
    frame = pcm(tone(300, 0.02, 8000))
    assert r.push(frame)[0] is frame  # zero-copy
    data = pcm(tone(300, 0.5, 8000))
    out = r.push(data[:333]) + r.push(data[333:]) + r.flush()
    assert b"".join(out) == data
    assert not ResampleStream(24000, 8000).passthrough


def test_stream_is_reusable_after_flush_and_clear():
    r = ResampleStream(24000, 8000)
    data = pcm(tone(440, 0.5, 24000))
    first = b"".join(r.push(data) + r.flush())
    second = b"".join(r.push(data) + r.flush())
    assert first == second
    r.push(data[:4801])
    r.clear()
    assert r.flush() == []
    assert b"".join(r.push(data) + r.flush()) == first


def test_one_shot_resample():
    data = pcm(tone(440, 1.0, 16000))
    assert len(resample(data, 16000, 8000)) == 16000
    assert resample(data, 16000, 16000) == data
    assert resample(b"", 16000, 8000) == b""
    with pytest.raises(ValueError, match="16-bit"):
        resample(b"\x00\x01\x02", 16000, 8000)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=2000), min_size=1, max_size=30))
def test_any_chunking_delivers_exact_frames_and_every_sample(sizes):
    data = pcm(tone(300, sum(sizes) / 2 / 24000 + 0.001, 24000))[: sum(sizes)]
    r = ResampleStream(24000, 16000)
    out: list[bytes] = []
    pos = 0
    for n in sizes:
        out += r.push(data[pos : pos + n])
        pos += n
    out += r.flush()
    assert all(len(f) == 640 for f in out[:-1])
    got = sum(len(f) for f in out) // 2
    assert abs(got - len(data) // 2 * 2 / 3) <= 2
