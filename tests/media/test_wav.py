import io
import wave

import pytest

from ivr.media import WavFormatError, interleave, read_wav, stereo_wav, wav_bytes, write_wav

from .audio import pcm, samples, tone


def test_mono_round_trip_in_memory():
    data = pcm(tone(440, 0.3, 8000))
    blob = wav_bytes(data, 8000)
    assert blob[:4] == b"RIFF"
    assert blob[8:12] == b"WAVE"
    wav = read_wav(blob, rate=8000, channels=1)
    assert (wav.pcm, wav.rate, wav.channels, wav.frames) == (data, 8000, 1, 2400)
    assert wav.duration_ms == 300


def test_file_round_trip(tmp_path):
    data = pcm(tone(440, 0.1, 16000))
    path = tmp_path / "x.wav"
    write_wav(path, data, 16000)
    assert read_wav(path).pcm == data
    assert read_wav(str(path), rate=16000).rate == 16000


def test_rate_and_channel_checks():
    blob = wav_bytes(bytes(640), 16000)
    with pytest.raises(WavFormatError, match="8000 Hz"):
        read_wav(blob, rate=8000)
    with pytest.raises(WavFormatError, match="2 channel"):
        read_wav(blob, channels=2)


def test_non_16_bit_and_garbage_are_rejected():
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(8000)
        w.writeframes(bytes(80))
    with pytest.raises(WavFormatError, match="16-bit"):
        read_wav(buf.getvalue())
    with pytest.raises(WavFormatError, match="not a PCM WAV"):
        read_wav(b"definitely not a wav file at all")


def test_bad_inputs_to_writer():
    with pytest.raises(WavFormatError):
        wav_bytes(b"\x00\x00\x00", 8000)
    with pytest.raises(WavFormatError):
        wav_bytes(bytes(6), 8000, channels=2)  # 1.5 stereo frames
    with pytest.raises(WavFormatError):
        wav_bytes(bytes(6), 8000, channels=3)


def test_interleave_pads_the_shorter_track():
    left = pcm(tone(300, 0.02, 8000))  # 160 samples
    right = pcm(tone(500, 0.01, 8000))  # 80 samples
    both = samples(interleave(left, right))
    assert both.size == 320
    assert both[0::2].tolist() == samples(left).tolist()
    assert both[1::2].tolist() == samples(right).tolist() + [0] * 80
    assert samples(interleave(right, left))[0::2].tolist() == samples(right).tolist() + [0] * 80


def test_stereo_recording_reads_back_with_caller_left():
    caller, ivr = pcm(tone(300, 0.2, 8000)), pcm(tone(900, 0.1, 8000))
    wav = read_wav(stereo_wav(caller, ivr, 8000), rate=8000, channels=2)
    assert wav.frames == 1600
    s = samples(wav.pcm)
    assert s[0::2].tobytes() == caller
    assert s[1::2][:800].tobytes() == ivr
