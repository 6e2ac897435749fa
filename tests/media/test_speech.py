"""Endpointer on real speech: espeak-ng fixtures (see data/make_fixtures.sh), 8 and 16 kHz."""

import numpy as np
import pytest

from ivr.media import (
    Endpointer,
    EnergyVad,
    Event,
    ListenSettings,
    ResampleStream,
    SpeechEnded,
    SpeechStarted,
    alaw_decode,
    alaw_encode,
    read_wav,
    ulaw_decode,
    ulaw_encode,
)

from .audio import DATA, frames, level_dbfs, noise, pcm, run, silence, speech, tone

RATES = [8000, 16000]
LEAD = 1.0  # seconds of line noise before the caller speaks


def placed(x: np.ndarray, rate: int, lead: float = LEAD, tail: float = 2.0) -> np.ndarray:
    return np.concatenate([silence(lead, rate), x, silence(tail, rate)])


@pytest.mark.parametrize("rate", RATES)
def test_fixtures_are_small_real_speech(rate):
    for name in ("caller", "prompt"):
        path = DATA / f"{name}_{rate // 1000}k.wav"
        assert path.stat().st_size < 100_000
        wav = read_wav(path, rate=rate, channels=1)
        assert 1000 < wav.duration_ms < 3000
        assert -26 < level_dbfs(np.frombuffer(wav.pcm, "<i2")) < -15


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("noise_dbfs", [-60.0, -45.0])
def test_utterance_onset_and_offset(rate, noise_dbfs):
    sp = speech("caller", rate)
    x = placed(sp, rate)
    x = x + noise(len(x) / rate, rate, noise_dbfs, seed=11)
    ep = Endpointer(rate)
    ep.listen(ListenSettings(trailing_silence_ms=800))
    events = run(ep, frames(x, rate))
    assert [type(e) for _, e in events] == [SpeechStarted, SpeechEnded]
    started, ended = events[0][1], events[1][1]
    assert isinstance(started, SpeechStarted)
    assert isinstance(ended, SpeechEnded)
    true_end_ms = LEAD * 1000 + len(sp) * 1000 / rate
    assert abs(started.at_ms - LEAD * 1000) <= 60
    assert abs(ended.ended_at_ms - true_end_ms) <= 120
    # the utterance holds the whole spoken phrase (pre-roll before onset, post-roll after)
    start_sample = (started.at_ms - 300) * rate // 1000
    captured = np.frombuffer(ended.pcm, "<i2")
    spoken = np.frombuffer(pcm(x), "<i2")[int(LEAD * rate) : int(LEAD * rate) + len(sp)]
    offset = int(LEAD * rate) - start_sample
    assert offset >= 0
    assert offset + spoken.size <= captured.size
    assert np.array_equal(captured[offset : offset + spoken.size], spoken)


@pytest.mark.parametrize("rate", RATES)
def test_echo_guard_ignores_prompt_echo_but_not_caller(rate):
    prompt = speech("prompt", rate)
    echo = placed(prompt * 0.1, rate, lead=0.5)  # our prompt coming back 20 dB down
    line = noise(len(echo) / rate, rate, -60, seed=4)
    ep = Endpointer(rate)

    ep.listen(echo_guard=True)
    assert run(ep, frames(echo + line, rate)) == []

    ep.listen(ListenSettings(no_input_ms=None))  # the guard is what makes the difference
    assert isinstance(run(ep, frames(echo + line, rate))[0][1], SpeechStarted)

    # the caller talks over the prompt from 1.0 s: barge-in, captured from its onset
    caller = speech("caller", rate)
    talk = placed(caller, rate, lead=1.0, tail=0.0)
    mixed = np.zeros(max(len(echo), len(talk)) + rate * 2)
    mixed[: len(echo)] += echo
    mixed[: len(talk)] += talk
    mixed += noise(len(mixed) / rate, rate, -60, seed=4)
    ep.listen(ListenSettings(trailing_silence_ms=800), echo_guard=True)
    events = run(ep, frames(mixed, rate))
    started = events[0][1]
    assert isinstance(started, SpeechStarted)
    assert abs(started.at_ms - 1000) <= 60
    assert events[0][0] * 20 - 1000 <= 300  # detected within 300 ms of onset, over the echo


@pytest.mark.parametrize("rate", RATES)
def test_caller_quieter_than_guard_can_answer_after_the_prompt(rate):
    """A soft caller (-36 dBFS) cannot barge in, but is heard normally once the guard ends."""
    soft = speech("caller", rate) * 10 ** (-15 / 20)
    x = placed(soft, rate, lead=0.5) + noise(0.5 + len(soft) / rate + 2.0, rate, -60, seed=2)
    ep = Endpointer(rate)
    ep.listen(echo_guard=True)
    assert run(ep, frames(x, rate)) == []
    ep.end_echo_guard()
    assert [type(e) for _, e in run(ep, frames(x, rate))] == [SpeechStarted, SpeechEnded]


def echo_scene(rate: int, echo_db: float, caller_db: float | None) -> tuple[np.ndarray, np.ndarray]:
    """(what we play, what comes back): the prompt, and its echo 100 ms later ``echo_db`` down, plus
    optionally the caller talking over it from 0.8 s at ``caller_db`` relative to the prompt."""
    prompt = speech("prompt", rate)
    total = len(prompt) + 3 * rate
    played = np.zeros(total)
    played[: len(prompt)] = prompt
    line = noise(total / rate, rate, -60, seed=3)
    delay = rate // 10
    line[delay : delay + len(prompt)] += prompt * 10 ** (echo_db / 20)
    if caller_db is not None:
        caller = speech("caller", rate) * 10 ** (caller_db / 20)
        start = int(0.8 * rate)
        line[start : start + len(caller)] += caller
    return played, line


def run_with_playback(
    ep: Endpointer, played: np.ndarray, line: np.ndarray, rate: int
) -> list[tuple[int, Event]]:
    events: list[tuple[int, Event]] = []
    for i, (out, inp) in enumerate(zip(frames(played, rate), frames(line, rate), strict=True)):
        ep.note_playback(out)
        ev = ep.feed(inp)
        if ev is not None:
            events.append((i, ev))
    return events


@pytest.mark.parametrize("rate", RATES)
def test_playback_reference_rejects_loud_echo(rate):
    """Echo only 10 dB down beats the static guard; following the prompt's level rejects it."""
    played, line = echo_scene(rate, -10, None)
    ep = Endpointer(rate)
    ep.listen(echo_guard=True)
    assert any(isinstance(e, SpeechStarted) for _, e in run(ep, frames(line, rate)))
    ep2 = Endpointer(rate)
    ep2.listen(echo_guard=True)
    assert run_with_playback(ep2, played, line, rate) == []
    ep2.note_playback(pcm(tone(500, 0.02, rate, -20)))
    assert isinstance(ep2.vad, EnergyVad)
    assert ep2.vad.echo_ref_db == pytest.approx(-20, abs=0.2)
    ep2.end_echo_guard()
    assert ep2.vad.echo_ref_db == -100.0


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("caller_db", [-6.0, 0.0, 6.0])
def test_playback_reference_still_lets_the_caller_barge_in(rate, caller_db):
    played, line = echo_scene(rate, -10, caller_db)
    ep = Endpointer(rate)
    ep.listen(ListenSettings(trailing_silence_ms=800), echo_guard=True)
    events = run_with_playback(ep, played, line, rate)
    assert events
    i, started = events[0]
    assert isinstance(started, SpeechStarted)
    assert 800 <= i * 20 <= 1300  # within 500 ms of the caller's onset at 800 ms


@pytest.mark.parametrize("codec", ["pcm", "ulaw", "alaw"])
def test_resampled_and_g711_speech_endpoints_like_native(codec):
    """Provider path: 16 kHz speech -> ResampleStream -> 8 kHz frames (-> G.711 and back) -> Endpointer."""
    x = placed(speech("caller", 16000), 16000)
    x = x + noise(len(x) / 16000, 16000, -60, seed=8)
    data = pcm(x)
    r = ResampleStream(16000, 8000)
    out: list[bytes] = []
    for i in range(0, len(data), 1234):  # uneven provider chunks
        out += r.push(data[i : i + 1234])
    out += r.flush()
    if codec == "ulaw":
        out = [ulaw_decode(ulaw_encode(f)) for f in out]
    elif codec == "alaw":
        out = [alaw_decode(alaw_encode(f)) for f in out]
    ep = Endpointer(8000)
    ep.listen()
    events = run(ep, out[:-1])
    assert [type(e) for _, e in events] == [SpeechStarted, SpeechEnded]
    started = events[0][1]
    assert isinstance(started, SpeechStarted)
    assert abs(started.at_ms - LEAD * 1000) <= 60
