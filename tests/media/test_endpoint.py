"""Endpointer on generated audio: tones stand in for voiced speech, Gaussian noise for line noise."""

import numpy as np
import pytest

from ivr.media import (
    Endpointer,
    EnergyVad,
    ListenSettings,
    MaxLengthReached,
    NoInput,
    SpeechEnded,
    SpeechStarted,
)

from .audio import frames, noise, pcm, run, silence, tone

RATES = [8000, 16000]


def with_floor(x: np.ndarray, rate: int, dbfs: float = -60.0) -> np.ndarray:
    return x + noise(len(x) / rate, rate, dbfs, seed=7)


def burst_signal(rate: int, lead: float = 1.0, length: float = 1.0, tail: float = 2.0) -> np.ndarray:
    x = np.concatenate([silence(lead, rate), tone(700, length, rate, -20), silence(tail, rate)])
    return with_floor(x, rate)


@pytest.mark.parametrize("rate", RATES)
def test_tone_burst_gives_start_then_end_with_exact_capture(rate):
    ep = Endpointer(rate)
    ep.listen(ListenSettings(trailing_silence_ms=600, postroll_ms=200))
    x = burst_signal(rate)
    events = run(ep, frames(x, rate))
    assert [type(e) for _, e in events] == [SpeechStarted, SpeechEnded]
    (i_start, started), (i_end, ended) = events
    assert started == SpeechStarted(1000)
    assert i_start == 50 + 5 - 1  # detected on the 5th voiced frame (100 ms min voiced)
    assert isinstance(ended, SpeechEnded)
    assert (ended.started_at_ms, ended.ended_at_ms) == (1000, 2000)
    assert i_end == 100 + 30 - 1  # 600 ms of trailing silence after the last voiced frame
    # utterance = 300 ms pre-roll + 1000 ms speech + 200 ms post-roll, byte-exact from the input
    assert ended.duration_ms == 1500
    data = pcm(x)
    fb = rate // 50 * 2
    assert ended.pcm == data[35 * fb : 110 * fb]
    assert not ep.listening
    assert run(ep, frames(burst_signal(rate), rate)) == []  # done until the next listen()


@pytest.mark.parametrize("rate", RATES)
def test_click_shorter_than_min_voiced_is_ignored(rate):
    ep = Endpointer(rate)
    ep.listen(ListenSettings(no_input_ms=None))
    x = with_floor(np.concatenate([silence(0.5, rate), tone(700, 0.06, rate, -10), silence(2.0, rate)]), rate)
    assert run(ep, frames(x, rate)) == []
    ep.listen(ListenSettings(no_input_ms=None, min_voiced_ms=60))
    assert [type(e) for _, e in run(ep, frames(x, rate))] == [SpeechStarted, SpeechEnded]


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("dbfs", [-70.0, -55.0, -40.0])
def test_stationary_noise_never_triggers_and_no_input_fires_on_time(rate, dbfs):
    ep = Endpointer(rate)
    ep.listen(ListenSettings(no_input_ms=5000))
    events = run(ep, frames(noise(10.0, rate, dbfs, seed=3), rate))
    assert events == [(249, NoInput(5000))]
    assert ep.vad.floor_db == pytest.approx(dbfs, abs=3)


@pytest.mark.parametrize("rate", RATES)
def test_digital_silence_and_disabled_timer(rate):
    ep = Endpointer(rate)
    ep.listen(ListenSettings(no_input_ms=None))
    assert run(ep, frames(silence(20.0, rate), rate)) == []
    assert ep.listening
    assert ep.elapsed_ms == 20000


@pytest.mark.parametrize("rate", RATES)
def test_max_length_cuts_endless_speech(rate):
    ep = Endpointer(rate, preroll_ms=300)
    ep.listen(ListenSettings(max_utterance_ms=3000))
    x = with_floor(np.concatenate([silence(0.5, rate), tone(500, 10.0, rate, -20)]), rate)
    events = run(ep, frames(x, rate))
    assert [type(e) for _, e in events] == [SpeechStarted, MaxLengthReached]
    i, cut = events[1]
    assert isinstance(cut, MaxLengthReached)
    assert i == 25 + 150 - 1
    assert cut.started_at_ms == 500
    assert cut.duration_ms == 3300
    assert len(cut.pcm) == 165 * rate // 50 * 2


@pytest.mark.parametrize("rate", RATES)
def test_trailing_silence_is_per_listen(rate):
    """Two words 500 ms apart: one utterance with 800 ms trailing silence, just the first with 300 ms."""
    word = tone(600, 0.4, rate, -20)
    x = with_floor(
        np.concatenate([silence(0.5, rate), word, silence(0.5, rate), word, silence(2.0, rate)]), rate
    )
    ep = Endpointer(rate)
    ep.listen(ListenSettings(trailing_silence_ms=800))
    ended = [e for _, e in run(ep, frames(x, rate)) if isinstance(e, SpeechEnded)]
    assert [(e.started_at_ms, e.ended_at_ms) for e in ended] == [(500, 1800)]
    ep.listen(ListenSettings(trailing_silence_ms=300))
    ended = [e for _, e in run(ep, frames(x, rate)) if isinstance(e, SpeechEnded)]
    assert [(e.started_at_ms, e.ended_at_ms) for e in ended] == [(500, 900)]


@pytest.mark.parametrize("rate", RATES)
def test_hysteresis_keeps_quieter_continuation(rate):
    """After a loud onset, a tail 8 dB over the floor (between stop and start margins) still counts."""
    floor = noise(4.0, rate, -50, seed=5)
    loud, quiet = tone(500, 0.5, rate, -30), tone(500, 1.0, rate, -42)
    body = np.concatenate([silence(1.0, rate), loud, quiet, silence(1.5, rate)])
    ep = Endpointer(rate)
    ep.listen(ListenSettings(trailing_silence_ms=400))
    ended = [e for _, e in run(ep, frames(body + floor, rate)) if isinstance(e, SpeechEnded)]
    assert [(e.started_at_ms, e.ended_at_ms) for e in ended] == [(1000, 2500)]
    # the quiet part alone is not loud enough to start speech
    ep.listen(ListenSettings(no_input_ms=None))
    only_quiet = np.concatenate([silence(1.0, rate), quiet, silence(1.0, rate)])
    assert run(ep, frames(only_quiet + floor[: only_quiet.size], rate)) == []


@pytest.mark.parametrize("rate", RATES)
def test_echo_guard_needs_louder_and_longer_speech(rate):
    ep = Endpointer(rate)
    quiet = with_floor(
        np.concatenate([silence(0.5, rate), tone(700, 2.0, rate, -40), silence(0.5, rate)]), rate
    )
    ep.listen(echo_guard=True)
    assert ep.echo_guard
    assert run(ep, frames(quiet, rate)) == []  # no barge-in; no-input timer has not started either
    ep.listen()
    assert isinstance(run(ep, frames(quiet, rate))[0][1], SpeechStarted)  # same audio without the guard
    ep.listen(echo_guard=True)
    loud = with_floor(
        np.concatenate([silence(0.5, rate), tone(700, 1.0, rate, -20), silence(1.0, rate)]), rate
    )
    i, ev = run(ep, frames(loud, rate))[0]
    assert ev == SpeechStarted(500)
    assert i == 25 + 10 - 1  # 200 ms min voiced under the guard


@pytest.mark.parametrize("rate", RATES)
def test_no_input_timer_starts_when_the_prompt_ends(rate):
    ep = Endpointer(rate)
    ep.listen(ListenSettings(no_input_ms=3000), echo_guard=True)
    quiet = frames(silence(10.0, rate), rate)
    assert run(ep, quiet) == []
    ep.end_echo_guard()
    assert not ep.echo_guard
    assert run(ep, frames(silence(5.0, rate), rate)) == [(149, NoInput(3000))]


@pytest.mark.parametrize("rate", RATES)
def test_preroll_captures_speech_that_began_before_listen(rate):
    x = with_floor(np.concatenate([silence(1.0, rate), tone(700, 1.0, rate, -20), silence(1.5, rate)]), rate)
    fs = list(frames(x, rate))
    ep = Endpointer(rate, preroll_ms=300)
    assert run(ep, fs[:60]) == []  # idle: the tone started 200 ms ago
    ep.listen()
    events = run(ep, fs[60:])
    assert events[0][1] == SpeechStarted(0)
    ended = events[1][1]
    assert isinstance(ended, SpeechEnded)
    # 15 frames of pre-roll before the 5 frames that confirmed speech: from frame 45, 100 ms before the tone
    assert ended.pcm.startswith(b"".join(fs[45:65]))


def test_one_event_per_frame_and_stop():
    rate = 8000
    ep = Endpointer(rate)
    assert not ep.listening
    ep.listen(ListenSettings(min_voiced_ms=20, trailing_silence_ms=20, no_input_ms=20))
    x = with_floor(np.concatenate([tone(700, 0.02, rate, -20), silence(0.1, rate)]), rate)
    # every condition is as short as one frame: events still arrive one per frame
    events = run(ep, frames(x, rate))
    assert [(i, type(e)) for i, e in events] == [(0, SpeechStarted), (1, SpeechEnded)]
    ep.listen()
    ep.feed(pcm(tone(700, 0.02, rate, -20)))
    ep.stop()
    assert not ep.listening
    assert not ep.in_speech


def test_frames_are_validated_and_copied():
    ep = Endpointer(8000)
    with pytest.raises(ValueError, match="320-byte"):
        ep.feed(bytes(321))
    ep.listen(ListenSettings(min_voiced_ms=20, trailing_silence_ms=20))
    buf = bytearray(pcm(tone(700, 0.02, 8000, -20)))
    original = bytes(buf)
    ep.feed(buf)  # type: ignore[arg-type]  # callers that reuse a buffer still get a stable utterance
    buf[:] = bytes(320)
    ended = ep.feed(bytes(320))
    assert isinstance(ended, SpeechEnded)
    assert original in ended.pcm


def test_vad_levels_and_floor():
    vad = EnergyVad(8000)
    assert vad.threshold() == -50.0  # no floor yet: only the absolute minimum applies
    assert vad.level(pcm(tone(1000, 0.02, 8000, -20))) == pytest.approx(-20, abs=0.1)
    assert vad.level(bytes(320)) == -100.0
    assert vad.level(pcm(np.full(160, 5000.0))) == -100.0  # pure DC is not sound
    for f in frames(noise(2.0, 8000, -45), 8000):
        vad.update(f)
    floor = vad.floor_db
    assert isinstance(floor, float)
    assert floor == pytest.approx(-45, abs=2)
    assert vad.threshold() == pytest.approx(floor + 10)
    assert vad.threshold(in_speech=True) == pytest.approx(floor + 6)
    assert vad.threshold(echo_guard=True) == pytest.approx(max(floor + 20, -35))
    loud = pcm(tone(1000, 0.02, 8000, -20))
    assert vad.update(loud)
    assert vad.update(loud, echo_guard=True)
    assert not vad.update(pcm(tone(1000, 0.02, 8000, -38)), echo_guard=True)


@pytest.mark.parametrize("rate", RATES)
def test_back_to_back_listens_keep_the_preroll(rate):
    """Listening again right after an utterance still captures the next one from its onset."""
    word = tone(600, 0.4, rate, -20)
    x = with_floor(
        np.concatenate([silence(0.5, rate), word, silence(0.6, rate), word, silence(1.0, rate)]), rate
    )
    fs = list(frames(x, rate))
    ep = Endpointer(rate)
    ep.listen(ListenSettings(trailing_silence_ms=300))
    ended: list[SpeechEnded] = []
    for f in fs:
        ev = ep.feed(f)
        if isinstance(ev, SpeechEnded):
            ended.append(ev)
            ep.listen(ListenSettings(trailing_silence_ms=300))
    assert len(ended) == 2
    # second word starts at frame 75; its utterance begins 15 frames (300 ms) earlier, inside the gap
    assert ended[1].pcm.startswith(b"".join(fs[60:80]))
    assert ended[1].duration_ms == 300 + 400 + 200


def heard(ep: Endpointer) -> bool:
    """``ep.voiced`` read through a call, so the type checker does not narrow it between frames."""
    return ep.voiced


def speaking(ep: Endpointer) -> bool:
    return ep.in_speech


@pytest.mark.parametrize("rate", RATES)
def test_voiced_is_the_vads_verdict_on_the_last_frame_in_every_state(rate):
    """The backchannel filter reads ``voiced``: it must follow the VAD idle, waiting and in speech."""
    ep = Endpointer(rate)
    quiet = list(frames(with_floor(silence(1.0, rate), rate), rate))
    loud = list(frames(with_floor(tone(700, 0.3, rate, -20), rate), rate))
    for f in quiet:  # idle: frames still go through the VAD
        ep.feed(f)
    assert not heard(ep)
    ep.feed(loud[0])
    assert heard(ep)
    for f in quiet[:10]:
        ep.feed(f)
    assert not heard(ep)
    ep.listen(ListenSettings(no_input_ms=None))
    assert ep.feed(loud[0]) is None
    assert not speaking(ep)
    assert heard(ep)
    seen = [ep.feed(f) for f in loud[1:]]
    assert any(isinstance(e, SpeechStarted) for e in seen)
    assert speaking(ep)
    assert heard(ep)
    ep.feed(quiet[0])  # in speech, a silent frame
    assert not heard(ep)
    assert speaking(ep)
