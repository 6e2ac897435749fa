"""Level handling: quiet and loud callers at every slin rate, and barge-in over the static echo guard.

The defect this guards against (issue 14): on a real Asterisk, audio played on a slin192 Local leg reached
the app 6 dB down (measured: a Playback and a Playtones source arrive -6.0 dB at slin16 when the caller leg is
slin192, while pass-through audio keeps its level), and barge-in then took ~1 s. Our media code is rate
independent; the slow barge-in came from the echo guard needing 200 ms of *consecutive* frames above its
-35 dBFS bar, which a quieter caller breaks at every stop consonant.
"""

import numpy as np
import pytest

from ivr.media import Endpointer, EnergyVad, ListenSettings, SpeechEnded, SpeechStarted
from ivr.media.resample import resample

from .audio import frames, noise, run, silence, speech

ALL_RATES = [8000, 16000, 48000, 192000]


def caller_at(rate: int, gain_db: float) -> np.ndarray:
    x = speech("caller", 16000) * 10 ** (gain_db / 20)
    if rate == 16000:
        return x
    data = np.clip(np.round(x), -32768, 32767).astype("<i2").tobytes()
    return np.frombuffer(resample(data, 16000, rate), "<i2").astype(np.float64)


def scene(rate: int, x: np.ndarray, lead: float = 1.0, tail: float = 1.5) -> np.ndarray:
    body = np.concatenate([silence(lead, rate), x, silence(tail, rate)])
    return body + noise(len(body) / rate, rate, -65, seed=9)


def barge_in_ms(rate: int, gain_db: float, ep: Endpointer | None = None) -> int | None:
    """Time from the caller's onset to SpeechStarted while the static echo guard is on."""
    ep = ep or Endpointer(rate)
    ep.listen(ListenSettings(no_input_ms=None), echo_guard=True)
    for i, ev in run(ep, frames(scene(rate, caller_at(rate, gain_db)), rate)):
        if isinstance(ev, SpeechStarted):
            return (i + 1) * 20 - 1000
    return None


@pytest.mark.parametrize("rate", ALL_RATES)
def test_a_caller_6_db_down_still_barges_in_fast_at_every_rate(rate):
    """Regression: 460 ms with this fixture before the fix (onset run restarted at each consonant)."""
    normal = barge_in_ms(rate, 0.0)
    quieter = barge_in_ms(rate, -6.0)
    assert normal is not None
    assert normal <= 250
    assert quieter is not None
    assert quieter <= 350


@pytest.mark.parametrize("rate", [8000, 16000])
def test_gaps_do_not_join_separate_clicks(rate):
    """The gap tolerance joins syllables, not isolated clicks: 60 ms bursts 200 ms apart never barge in."""
    burst = caller_at(rate, 0.0)[: rate * 60 // 1000]
    x = np.concatenate([np.concatenate([burst, silence(0.2, rate)]) for _ in range(8)])
    ep = Endpointer(rate)
    ep.listen(ListenSettings(no_input_ms=None), echo_guard=True)
    assert run(ep, frames(scene(rate, x), rate)) == []


@pytest.mark.parametrize("rate", ALL_RATES)
def test_the_level_seen_does_not_depend_on_the_rate(rate):
    vad = EnergyVad(rate)
    levels = [vad.level(f) for f in frames(caller_at(rate, 0.0), rate)]
    ref = EnergyVad(16000)
    expected = [ref.level(f) for f in frames(caller_at(16000, 0.0), 16000)]
    n = min(len(levels), len(expected)) - 2
    loud = [i for i in range(n) if expected[i] > -40]
    assert np.median([abs(levels[i] - expected[i]) for i in loud]) < 0.5


@pytest.mark.parametrize("rate", [8000, 16000, 192000])
def test_a_quiet_caller_heard_once_can_barge_in_on_the_next_prompt(rate):
    """-36 dBFS is under the static guard's -35 dBFS bar: no barge-in on the first prompt, but once the
    caller has answered, the bar follows their own level (10 dB under it, never below -45 dBFS)."""
    ep = Endpointer(rate)
    assert barge_in_ms(rate, -15.0, ep) is None
    ep.end_echo_guard()
    ep.listen(ListenSettings(trailing_silence_ms=600))
    events = run(ep, frames(scene(rate, caller_at(rate, -15.0)), rate))
    assert [type(e) for _, e in events] == [SpeechStarted, SpeechEnded]
    heard = ep.vad.speech_level_db if isinstance(ep.vad, EnergyVad) else None
    assert heard is not None
    assert -40 < heard < -30
    late = barge_in_ms(rate, -15.0, ep)
    assert late is not None
    assert late <= 400


@pytest.mark.parametrize("rate", ALL_RATES)
def test_a_loud_caller_is_endpointed_normally(rate):
    x = np.clip(caller_at(rate, 8.0), -32768, 32767)  # peaks at full scale
    ep = Endpointer(rate)
    ep.listen(ListenSettings(trailing_silence_ms=600))
    events = run(ep, frames(scene(rate, x), rate))
    assert [type(e) for _, e in events] == [SpeechStarted, SpeechEnded]
    started, ended = events[0][1], events[1][1]
    assert isinstance(started, SpeechStarted)
    assert isinstance(ended, SpeechEnded)
    assert abs(started.at_ms - 1000) <= 60
    assert abs(ended.ended_at_ms - (1000 + len(x) * 1000 / rate)) <= 120
