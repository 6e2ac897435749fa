"""Echo-aware speech onset and the backchannel filter, on the espeak-ng fixtures."""

import numpy as np
import pytest

from ivr.media.bargein import BackchannelFilter, BackchannelSettings, EchoCheck, EchoSettings, frame_level_db

from .audio import frames, noise, silence, speech

RATES = [8000, 16000]


def prompt_and_echo(
    rate: int, echo_db: float, delay_ms: int, caller_db: float | None = None, at: float = 4.0
):
    """Three plays of the prompt (what we send) and the line (its echo, optionally the caller from ``at``)."""
    p = speech("prompt", rate)
    played = np.concatenate([p, silence(0.3, rate), p, silence(0.3, rate), p, silence(0.3, rate), p])
    played = np.concatenate([played, silence(1.0, rate)])
    line = noise(len(played) / rate, rate, -60, seed=6)
    d = rate * delay_ms // 1000
    line[d:] += played[: len(played) - d] * 10 ** (echo_db / 20)
    caller_span = None
    if caller_db is not None:
        c = speech("caller", rate) * 10 ** (caller_db / 20)
        start = int(at * rate)
        line[start : start + len(c)] += c
        caller_span = (start // (rate // 50), (start + len(c)) // (rate // 50))
    return played, line, caller_span


def feed(check: EchoCheck, played: np.ndarray, line: np.ndarray, rate: int) -> list[bool]:
    out = []
    for sent, got in zip(frames(played, rate), frames(line, rate), strict=True):
        check.played(sent)
        out.append(check.heard(got))
    return out


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize(("echo_db", "delay_ms"), [(-6.0, 60), (-12.0, 160), (-20.0, 300)])
def test_echo_alone_is_never_the_callers_voice(rate, echo_db, delay_ms):
    played, line, _ = prompt_and_echo(rate, echo_db, delay_ms)
    check = EchoCheck(rate)
    own = feed(check, played, line, rate)
    assert check.delay_frames == delay_ms // 20
    assert check.return_loss_db == pytest.approx(-echo_db, abs=3)
    assert sum(own) <= 2  # a stray frame at most (an onset needs 200 ms of them)
    run = max_run(own)
    assert run <= 1


def max_run(flags: list[bool]) -> int:
    best = cur = 0
    for f in flags:
        cur = cur + 1 if f else 0
        best = max(best, cur)
    return best


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("caller_db", [-6.0, 0.0])
def test_caller_talking_over_a_strong_echo_is_heard(rate, caller_db):
    """Echo only 6 dB down (worse than the static guard handles) and a caller 6 dB under the prompt."""
    played, line, span = prompt_and_echo(rate, -6.0, 100, caller_db)
    assert span is not None
    own = feed(EchoCheck(rate), played, line, rate)
    first, _last = span
    assert max_run(own[: first - 2]) <= 1  # before the caller: echo only
    assert max_run(own[first : first + 25]) >= 8  # the caller's first half second has a 160 ms voiced run


def test_without_a_prompt_any_sound_is_the_callers():
    rate = 8000
    check = EchoCheck(rate)
    x = np.concatenate([silence(0.5, rate), speech("caller", rate), silence(0.5, rate)])
    heard = [check.heard(f) for f in frames(x + noise(len(x) / rate, rate, -70), rate)]
    assert not any(heard[:20])
    assert sum(heard) > 40


def test_unknown_delay_is_pessimistic():
    """Before the path is learned, any recent prompt frame may be echoing: nothing under it is own voice."""
    rate = 8000
    check = EchoCheck(rate)
    loud = speech("prompt", rate)[: rate // 2]
    for f in frames(loud, rate):
        check.played(f)
    assert check.delay_frames is None
    assert check.predicted_echo_db() > -40


def test_a_prompts_echo_is_predicted_while_its_last_sound_is_in_the_window_and_not_after():
    """The window is the last max_delay_ms / 20 + 2 frames played: the echo of the prompt's last loud frame
    is expected while that frame is in it, and none the frame after (the check answers a silent window
    without looking at it: the usual case while a call listens)."""
    rate = 8000
    check = EchoCheck(rate, EchoSettings(max_delay_ms=400))
    for f in frames(speech("prompt", rate)[: rate // 2], rate):
        check.played(f)
    window = 400 // 20 + 2
    for k in range(1, window):
        check.played(bytes(320))
        assert check.predicted_echo_db() > -100.0, f"{k} silent frames after: still in the window"
    check.played(bytes(320))
    assert check.predicted_echo_db() == -100.0
    assert check.heard_level(-40.0), "with no echo to expect, a caller at -40 dBFS is heard"


@pytest.mark.parametrize("rate", RATES)
def test_levels_measured_elsewhere_give_the_same_verdicts_as_frames(rate):
    """heard_level (the native reader's levels) decides and learns exactly as heard (frames) does."""
    played, line, _ = prompt_and_echo(rate, -12.0, 160, caller_db=-6.0)
    by_frame = EchoCheck(rate)
    by_level = EchoCheck(rate)
    verdicts_frame = feed(by_frame, played, line, rate)
    verdicts_level = []
    for sent, got in zip(frames(played, rate), frames(line, rate), strict=True):
        by_level.played_db(frame_level_db(sent))
        verdicts_level.append(by_level.heard_level(frame_level_db(got)))
    assert verdicts_level == verdicts_frame
    assert by_level.delay_frames == by_frame.delay_frames == 8
    assert by_level.return_loss_db == by_frame.return_loss_db


def bc_run(flt: BackchannelFilter, pattern: str) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for i, ch in enumerate(pattern):
        d = flt.frame(ch == "1")
        if d is not None:
            out.append((i, d))
    return out


def test_a_short_backchannel_pauses_then_resumes_the_prompt():
    flt = BackchannelFilter()
    assert flt.start(voiced_ms=100) == "pause"
    assert bc_run(flt, "1" * 10 + "0" * 12) == [(19, "resume")]  # 300 ms of "mm-hm", then 200 ms of silence
    assert flt.backchannels == 1
    assert not flt.active


def test_a_real_interruption_is_taken_after_the_backchannel_limit():
    flt = BackchannelFilter()
    flt.start(voiced_ms=100)
    assert bc_run(flt, "1" * 40) == [(25, "interrupt")]  # 100 + 26 x 20 ms > 600 ms


def test_short_gaps_inside_an_interruption_count_as_speech():
    flt = BackchannelFilter(BackchannelSettings(max_backchannel_ms=400))
    flt.start()
    # 100 ms, a 60 ms gap, then speech: the gap counts, so 400 ms are passed at frame 20, not 23
    assert bc_run(flt, "11111" + "000" + "1" * 20) == [(20, "interrupt")]


def test_backchannel_length_is_a_per_step_setting():
    flt = BackchannelFilter(BackchannelSettings(max_backchannel_ms=1000))
    flt.start(voiced_ms=100)
    assert bc_run(flt, "1" * 40 + "0" * 10) == [(49, "resume")]  # "okay, thanks" (0.9 s) still a backchannel
    assert flt.frame(True) is None  # inactive until the next start()
