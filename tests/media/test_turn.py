"""TurnDetector decisions in virtual time: every path from pause to end of turn.

Speech is a tone over line noise (the energy VAD's view of a voiced run); the end-of-turn model is
replaced by verdicts given at chosen frames, since what is under test is the decision, not the model
(tests/media/test_smart_turn.py runs the real one).
"""

from collections.abc import Callable, Sequence

import numpy as np
import pytest

from ivr.media import Endpointer, ListenSettings, NoInput, SpeechEnded, SpeechStarted
from ivr.media.turn import CheckTurn, TurnDetector, TurnSettings

from .audio import frames, noise, silence, tone

RATE = 8000
TURN = TurnSettings(min_silence_ms=200, max_silence_ms=1500, threshold=0.5)


def talk(*parts: tuple[str, float], rate: int = RATE) -> list[bytes]:
    """("speech" | "pause", seconds) parts after 0.5 s of line noise, then 3 s of silence."""
    chunks = [silence(0.5, rate)]
    for kind, secs in parts:
        chunks.append(tone(600, secs, rate, -20) if kind == "speech" else silence(secs, rate))
    chunks.append(silence(3.0, rate))
    x = np.concatenate(chunks)
    return list(frames(x + noise(len(x) / rate, rate, -60, seed=5), rate))


Model = Callable[[CheckTurn], tuple[int, float | None] | None]
"""Given a check, (frames until the verdict arrives, probability or None for a failure), or None: never."""


def drive(fs: Sequence[bytes], model: Model | None, turn: TurnSettings | None = TURN, **listen: int):
    td = TurnDetector(Endpointer(RATE), model=model is not None)
    td.listen(ListenSettings(no_input_ms=None, **listen), turn=turn)
    due: dict[int, list[tuple[int, float | None]]] = {}
    log: list[tuple[int, object]] = []
    for i, f in enumerate(fs):
        ev = td.feed(f)
        if isinstance(ev, CheckTurn):
            log.append((i, ev))
            answer = model(ev) if model is not None else None
            if answer is not None:
                due.setdefault(i + answer[0], []).append((ev.request, answer[1]))
        elif ev is not None:
            log.append((i, ev))
        for request, p in due.pop(i, []):
            ended = td.verdict(request, p)
            if ended is not None:
                log.append((i, ended))
    return td, log


def ended(log) -> list[tuple[int, SpeechEnded]]:
    return [(i, e) for i, e in log if isinstance(e, SpeechEnded)]


def checks(log) -> list[tuple[int, CheckTurn]]:
    return [(i, e) for i, e in log if isinstance(e, CheckTurn)]


def test_complete_answer_ends_about_200_ms_after_speech():
    """A complete "large." -> the model says done at the first pause: the turn ends 200 ms + 2 frames after it."""
    fs = talk(("speech", 0.6))
    td, log = drive(fs, lambda c: (2, 0.93))
    [(i, c)] = checks(log)
    assert c.paused_at_ms == 1100  # listen-relative: 0.5 s lead + 0.6 s of speech
    assert i == 25 + 30 + 10 - 1  # lead + speech + 200 ms of silence (frame index)
    [(j, e)] = ended(log)
    assert j == i + 2
    assert (e.started_at_ms, e.ended_at_ms) == (500, 1100)
    assert td.last_reason == "model"
    assert (td.checks, td.early_ends) == (1, 1)
    assert len(c.pcm) == (15 + 30 + 10) * 320  # pre-roll + speech + the pause so far, at 8 kHz


def test_pause_inside_a_card_number_waits_and_keeps_one_utterance():
    """Digits "four one one two ... three three": not done at the pause, the caller goes on, done at the end."""
    fs = talk(("speech", 0.8), ("pause", 0.7), ("speech", 0.6))
    verdicts = iter([0.08, 0.91])
    td, log = drive(fs, lambda c: (3, next(verdicts)))
    assert len(checks(log)) == 2
    [(_, e)] = ended(log)
    assert (e.started_at_ms, e.ended_at_ms) == (500, 2600)
    assert td.last_reason == "model"


def test_uhm_then_silence_waits_for_the_step_maximum():
    """A hesitant "I'd like the, uhm ..." and nothing more: the model says not done, so max_silence_ms ends it."""
    fs = talk(("speech", 0.9))
    td, log = drive(fs, lambda c: (2, 0.04))
    [(i, e)] = ended(log)
    assert e.ended_at_ms == 1400
    assert i == 25 + 45 + 75 - 1  # 1500 ms of silence after the last voiced frame
    assert td.last_reason == "silence"
    assert not td.waiting_for_model


@pytest.mark.parametrize("max_ms", [800, 2500])
def test_the_maximum_is_a_per_step_setting(max_ms):
    fs = talk(("speech", 0.5))
    turn = TurnSettings(min_silence_ms=300, max_silence_ms=max_ms)
    _, log = drive(fs, lambda c: (1, 0.2), turn=turn)
    [(i, _)] = ended(log)
    assert i == 25 + 25 + max_ms // 20 - 1
    [(k, _)] = checks(log)
    assert k == 25 + 25 + 15 - 1  # asked after 300 ms


def test_threshold_is_a_per_step_setting():
    fs = talk(("speech", 0.5))
    strict = TurnSettings(threshold=0.95)
    _, log = drive(fs, lambda c: (1, 0.9), turn=strict)
    assert ended(log)[0][0] == 25 + 25 + 75 - 1  # 0.9 is not enough: silence ends it
    _, log = drive(fs, lambda c: (1, 0.9))
    assert ended(log)[0][0] == 25 + 25 + 10  # default 0.5: ended by the model


def test_slow_model_falls_back_to_the_silence_timeout_and_late_verdict_is_ignored():
    fs = talk(("speech", 0.5))
    td, log = drive(fs, lambda c: (120, 0.99))  # 2.4 s: after max_silence_ms
    [(i, _)] = ended(log)
    assert i == 25 + 25 + 75 - 1
    assert td.last_reason == "silence"
    assert td.early_ends == 0


def test_failing_model_falls_back_to_the_silence_timeout():
    fs = talk(("speech", 0.5))
    td, log = drive(fs, lambda c: (1, None))
    [(i, _)] = ended(log)
    assert i == 25 + 25 + 75 - 1
    assert td.last_reason == "silence"


def test_model_that_never_answers_falls_back_too():
    _td, log = drive(talk(("speech", 0.5)), lambda c: None)
    assert ended(log)[0][0] == 25 + 25 + 75 - 1


def test_verdict_for_a_pause_the_caller_talked_through_is_ignored():
    """The model answers "done" only after the caller started again: that verdict is stale."""
    fs = talk(("speech", 0.5), ("pause", 0.3), ("speech", 0.5))
    verdicts = iter([(12, 0.99), (1, 0.1)])  # first answer arrives 240 ms later, inside the second word
    td, log = drive(fs, lambda c: next(verdicts))
    [(_, e)] = ended(log)
    assert (e.started_at_ms, e.ended_at_ms) == (500, 1800)
    assert td.last_reason == "silence"


def test_without_a_model_it_is_todays_energy_endpointing():
    fs = talk(("speech", 0.6))
    td, log = drive(fs, None, trailing_silence_ms=800)
    assert checks(log) == []
    assert [type(e) for _, e in log] == [SpeechStarted, SpeechEnded]
    assert ended(log)[0][0] == 25 + 30 + 40 - 1
    assert td.last_reason == "silence"


def test_no_turn_settings_means_no_model_checks():
    fs = talk(("speech", 0.6))
    _, log = drive(fs, lambda c: (1, 0.99), turn=None, trailing_silence_ms=800)
    assert checks(log) == []
    assert ended(log)[0][0] == 25 + 30 + 40 - 1


def test_no_input_and_a_new_listen_drop_pending_checks():
    td = TurnDetector(Endpointer(RATE))
    td.listen(ListenSettings(no_input_ms=1000), turn=TURN)
    evs = [td.feed(f) for f in talk()[:60]]
    assert any(isinstance(e, NoInput) for e in evs)
    fs = talk(("speech", 0.5))
    td.listen(ListenSettings(no_input_ms=None), turn=TURN)
    check = next(e for e in (td.feed(f) for f in fs) if isinstance(e, CheckTurn))
    td.listen(ListenSettings(no_input_ms=None), turn=TURN)
    assert td.verdict(check.request, 0.99) is None


@pytest.mark.parametrize(
    "kwargs", [{"min_silence_ms": 0}, {"min_silence_ms": 900, "max_silence_ms": 800}, {"threshold": 0.0}]
)
def test_settings_are_validated(kwargs):
    with pytest.raises(ValueError, match="end-of-turn"):
        TurnSettings(**kwargs)
