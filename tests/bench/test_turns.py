"""The turn harness on hand-made items (espeak-ng fixtures, no piper) and the corpus definition.

Checks what each configuration decides and counts, never speed: the figures come from
``ivr bench --turns`` (README, Turn-taking).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ivr.bench import turns
from ivr.bench.turn_corpus import LEAD_MS, RATE, SIZES, Item, Spec, specs, telephone_band
from ivr.media.turn import TurnSettings
from ivr.media.wav import read_wav, write_wav

DATA = Path(__file__).parents[1] / "media" / "data"


def fixture(name: str) -> np.ndarray:
    return np.frombuffer(read_wav(DATA / f"{name}_8k.wav", rate=8000, channels=1).pcm, "<i2").astype(float)


def make_item(tmp: Path, kind: str, *, echo_db: float, answer: bool, expect: str | None) -> Item:
    """The prompt fixture played from LEAD_MS; the caller fixture 0.5 s after it, or nothing."""
    prompt = fixture("prompt")
    caller = fixture("caller")
    lead = RATE * LEAD_MS // 1000
    end = lead + prompt.size
    start = end + RATE // 2
    line = np.zeros(start + caller.size + 3 * RATE)
    if answer:
        line[start : start + caller.size] = caller
    line += np.random.default_rng(1).normal(0, 30, line.size)
    spec = Spec(f"t-{kind}", kind, "p", "a", expect, dict(SIZES), echo_db=echo_db, echo_delay_ms=100)
    write_wav(tmp / "caller.wav", line.astype("<i2").tobytes(), RATE)
    write_wav(tmp / "prompt.wav", prompt.astype("<i2").tobytes(), RATE)
    ms = 1000 / RATE
    return Item(
        spec,
        "caller.wav",
        "prompt.wav",
        prompt_end_ms=round(end * ms),
        speech_start_ms=round(start * ms) if answer else None,
        speech_end_ms=round((start + caller.size) * ms) if answer else None,
        pause_at_ms=None,
    )


class FakeStt:
    def __init__(self, text: str, ms: float = 0.0) -> None:
        self.said = text
        self.calls: list[list[str]] = []
        self.last_ms = ms
        self.last_confidence: float | None = None

    def text(self, pcm: bytes, hints: list[str]) -> str:
        self.calls.append(hints)
        return self.said


class SureModel:
    def probability(self, pcm: bytes, rate: int) -> float:
        return 0.97


def run_one(
    item: Item, tmp: Path, config: turns.Config, stt: FakeStt
) -> tuple[turns.Outcome, turns.ConfigResult]:
    res = turns.ConfigResult(config)
    out = turns.run_item(
        item,
        tmp,
        config,
        stt=stt,  # type: ignore[arg-type]
        turn_model=SureModel() if config.turn else None,
        turn=TurnSettings(min_silence_ms=200, max_silence_ms=1500),
        result=res,
    )
    return out, res


def test_today_takes_an_answer_after_800_ms_of_silence(tmp_path: Path) -> None:
    item = make_item(tmp_path, "complete", echo_db=-20.0, answer=True, expect="large")
    stt = FakeStt("A large one please")
    out, _ = run_one(item, tmp_path, turns.Config("energy", False, False), stt)
    assert out.answer == "large"
    assert out.correct
    assert out.delay_ms is not None
    assert 700 <= out.delay_ms <= 900
    assert not out.barge_in
    assert stt.calls == [["small", "small", "medium", "medium", "regular size", "large", "large", "big one"]]


def test_turn_model_ends_the_turn_at_the_first_pause(tmp_path: Path) -> None:
    item = make_item(tmp_path, "complete", echo_db=-20.0, answer=True, expect="large")
    out, res = run_one(item, tmp_path, turns.Config("energy", True, True), FakeStt("large"))
    assert out.correct
    assert out.delay_ms is not None
    assert out.delay_ms < 450  # 200 ms pause + the measured model time (in frames) + VAD lag
    assert len(res.model_ms) >= 1


WORDS = turns.Config("energy", True, True, digits_by_silence=True, words_check=True)


def test_words_that_are_no_answer_yet_keep_the_turn_open_despite_the_model(tmp_path: Path) -> None:
    item = make_item(tmp_path, "complete", echo_db=-20.0, answer=True, expect="large")
    stt = FakeStt("Let me think.")
    out, res = run_one(item, tmp_path, WORDS, stt)
    assert len(res.model_ms) >= 1  # the model was asked (and said "finished": SureModel)
    assert len(res.words_ms) == len(res.model_ms)
    assert out.delay_ms is not None
    assert out.delay_ms >= 1400  # max_silence_ms ended it, not the pause
    assert out.answer is None


def test_words_that_answer_end_the_turn_at_the_pause_once_transcribed(tmp_path: Path) -> None:
    item = make_item(tmp_path, "complete", echo_db=-20.0, answer=True, expect="large")
    quick, _ = run_one(item, tmp_path, WORDS, FakeStt("Large.", ms=0.0))
    slow, _ = run_one(item, tmp_path, WORDS, FakeStt("Large.", ms=300.0))
    assert quick.correct
    assert slow.correct
    assert quick.delay_ms is not None
    assert slow.delay_ms is not None
    assert quick.delay_ms < 450
    assert slow.delay_ms - quick.delay_ms >= 280  # the transcript came later than the model's verdict


def test_a_digit_string_shorter_than_the_capture_waits_longer(tmp_path: Path) -> None:
    item = make_item(tmp_path, "number_pause", echo_db=-20.0, answer=True, expect="55667788")
    item.spec = replace(item.spec, capture="digits", min_digits=8)
    short, res = run_one(item, tmp_path, WORDS, FakeStt("5 5 6 6"))
    assert res.model_ms == []  # digit strings: the words alone judge the pause
    assert len(res.words_ms) == 1
    assert short.delay_ms is not None
    assert short.delay_ms >= turns.DIGITS_INCOMPLETE_MS - 100
    whole, _ = run_one(item, tmp_path, WORDS, FakeStt("five five six six seven seven eight eight"))
    assert whole.correct
    assert whole.delay_ms is not None
    assert whole.delay_ms < turns.DIGITS_SILENCE_MS + 200
    plain, _ = run_one(item, tmp_path, replace(WORDS, words_check=False), FakeStt("5 5 6 6"))
    assert plain.delay_ms is not None
    assert plain.delay_ms < turns.DIGITS_SILENCE_MS + 200


def test_words_finished_is_what_the_step_would_accept() -> None:
    sizes = Item(Spec("s", "complete", "p", "a", "large", dict(SIZES)), "c", "p", 0, 0, 0, None)
    assert turns.words_finished(sizes, "A large one.")
    assert turns.words_finished(sizes, "Large.", 0.6)
    assert not turns.words_finished(sizes, "Medium.", 0.5), "below words_min_confidence: a misheard filler"
    assert not turns.words_finished(sizes, "Let me think.")
    assert not turns.words_finished(sizes, "Maybe a")
    card = Item(
        Spec("c", "number_pause", "p", "a", "1", capture="digits", min_digits=8), "c", "p", 0, 0, 0, None
    )
    assert not turns.words_finished(card, "5 5 6 6")
    assert turns.words_finished(card, "5566 7788")
    yes_no = Item(Spec("y", "complete", "p", "a", "yes", capture="yes_no"), "c", "p", 0, 0, 0, None)
    assert turns.words_finished(yes_no, "Yes.")
    assert not turns.words_finished(yes_no, "Well,")
    assert turns.hints_for(card)[:3] == ["zero", "oh", "one"]  # as the runtime passes for digit captures
    assert turns.hints_for(yes_no) == ["yes", "no"]


def test_loud_echo_stops_the_prompt_only_without_the_echo_gate(tmp_path: Path) -> None:
    item = make_item(tmp_path, "echo_only", echo_db=-6.0, answer=False, expect=None)
    static, _ = run_one(item, tmp_path, turns.Config("energy", False, False), FakeStt("balance"))
    assert static.barge_in
    assert static.prompt_stopped
    gated, _ = run_one(item, tmp_path, turns.Config("energy", False, True), FakeStt("balance"))
    assert not gated.barge_in
    assert not gated.prompt_stopped
    assert gated.answer is None


def test_summary_and_table_leave_the_end_to_end_figure_to_the_runtime(tmp_path: Path) -> None:
    item = make_item(tmp_path, "complete", echo_db=-20.0, answer=True, expect="large")
    out, res = run_one(item, tmp_path, turns.Config("energy", False, False), FakeStt("large"))
    res.outcomes.append(out)
    summary = res.summary()
    assert summary["intent_accuracy"] == 1.0
    assert summary["reply_p50_ms"] is None
    text = turns.table([res])
    assert "energy VAD, 800 ms silence, static echo guard" in text
    assert "speech end -> first reply frame: not measured by these decision runs" in text


def test_reply_latency_hook_is_reported(tmp_path: Path) -> None:
    item = make_item(tmp_path, "complete", echo_db=-20.0, answer=True, expect="large")
    res = turns.ConfigResult(turns.Config("energy", False, False))
    out = turns.run_item(
        item,
        tmp_path,
        res.config,
        stt=FakeStt("large"),  # type: ignore[arg-type]
        turn=TurnSettings(),
        result=res,
        reply_latency=lambda it, ended: 321.0,
    )
    res.outcomes.append(out)
    assert res.summary()["reply_p50_ms"] == 321.0
    assert "not measured" not in turns.table([res])


def test_corpus_covers_every_kind_with_ground_truth() -> None:
    items = specs()
    kinds = {s.kind for s in items}
    assert kinds == {"complete", "number_pause", "uhm", "backchannel", "echo_only", "noise_only"}
    assert len({s.name for s in items}) == len(items)
    for s in items:
        if s.kind in ("complete", "number_pause", "uhm"):
            assert s.expect is not None
            assert s.answer
        else:
            assert s.expect is None
        if s.kind in ("number_pause", "uhm"):
            assert s.pause_ms >= 700
    assert specs() == items  # deterministic


@pytest.mark.parametrize(("freq", "kept"), [(100, False), (1000, True), (3000, True), (3900, False)])
def test_telephone_band(freq: int, kept: bool) -> None:
    t = np.arange(RATE) / RATE
    x = np.sin(2 * np.pi * freq * t) * 10000
    y = telephone_band(x, RATE)
    ratio = np.sqrt(np.mean(y**2) / np.mean(x**2))
    assert (ratio > 0.9) if kept else (ratio < 0.1)


async def test_end_to_end_measures_speech_end_to_first_reply_frame_at_the_caller(tmp_path: Path) -> None:
    """One whole call through the runtime with the local OpenAI stand-in: the caller's answer is taken
    (the flow went to its choice) and the first audible reply frame after the speech's end is timed.
    Checks that a figure exists and is sane, never how fast it is (README has the figures)."""
    from ivr.bench import turn_calls
    from ivr.call.turn_models import TurnModels

    item = make_item(tmp_path, "complete", echo_db=-60.0, answer=True, expect="small")
    spec = Spec(
        "t-e2e", "complete", "Which size?", "small", "small", dict(SIZES), echo_db=-60.0, echo_delay_ms=100
    )
    item = Item(spec, item.caller, item.prompt, item.prompt_end_ms, item.speech_start_ms,
                item.speech_end_ms, None)  # fmt: skip
    models = TurnModels.load(vad="energy", turn=False)
    try:
        result = await turn_calls._run_engine("stand-in", [item], tmp_path, models, None)
    finally:
        models.close()
    [outcome] = result.outcomes
    assert outcome.answer == "small", outcome
    assert outcome.reply_ms is not None
    assert 0 < outcome.reply_ms < 5000, outcome
    assert outcome.heard == ("small",)  # what the call's STT heard, for the misses' detail
    assert result.summary()["intent_accuracy"] == 1.0


def test_a_card_number_question_asks_for_its_length(tmp_path: Path) -> None:
    from ivr.flow.loader import load_flow

    spec = next(s for s in specs() if s.kind == "number_pause")
    assert spec.min_digits == 8
    item = Item(spec, "c.wav", "p.wav", 0, 0, 0, None)
    path = tmp_path / "card.yaml"
    path.write_text(turns.flow_yaml(item, "card"), encoding="utf-8")
    flow, _report = load_flow(path)
    capture = flow.steps["ask"].capture  # type: ignore[union-attr]
    assert capture is not None
    assert capture.min_length == 8
