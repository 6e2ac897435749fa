import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr.media import Framer, frame_bytes, frame_samples, silence


def test_frame_sizes_for_call_rates():
    assert frame_bytes(8000) == 320
    assert frame_bytes(16000) == 640
    assert frame_samples(24000) == 480
    assert silence(8000) == bytes(320)


def test_rate_without_whole_frames_is_rejected():
    with pytest.raises(ValueError, match="whole number"):
        frame_bytes(11025, 10)  # 110.25 samples


def test_framer_regroups_uneven_chunks_exactly():
    data = bytes(range(256)) * 10
    f = Framer(320)
    out: list[bytes] = []
    for size in (1, 319, 3, 700, 1, 0, 500):
        pos = sum(len(x) for x in out) + f.pending
        out += f.push(data[pos : pos + size])
    assert all(len(x) == 320 for x in out)
    assert b"".join(out) + f.flush() == data[:1524]
    assert f.pending == 0


def test_framer_passes_exact_frame_through_without_copy():
    f = Framer(320)
    frame = bytes(320)
    assert f.push(frame)[0] is frame
    ba = bytearray(320)
    got = f.push(ba)[0]
    assert type(got) is bytes
    ba[0] = 1
    assert got[0] == 0


@given(st.lists(st.integers(min_value=0, max_value=1500), max_size=40), st.sampled_from([320, 640, 960]))
def test_framer_any_chunking_preserves_bytes(sizes, frame):
    data = bytes(i % 251 for i in range(sum(sizes)))
    f = Framer(frame)
    out: list[bytes] = []
    pos = 0
    for n in sizes:
        out += f.push(data[pos : pos + n])
        pos += n
    assert all(len(x) == frame for x in out)
    assert b"".join(out) + f.flush() == data
