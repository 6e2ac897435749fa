"""Caller frames of many calls measured in one step: the same levels and the same endpointing as frame by
frame, one flush per batch, each sink's frames in order, a failing sink costing only its own frame."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import pytest

from ivr.media.batch import LevelBatch
from ivr.media.endpoint import Endpointer, ListenSettings
from ivr.media.vad import EnergyVad, frame_levels

from .audio import noise, pcm, tone


def _frames(rate: int, count: int, seed: int = 3) -> list[bytes]:
    rng = np.random.default_rng(seed)
    n = rate // 50
    out = []
    for i in range(count):
        scale = [0.0, 3.0, 300.0, 3000.0, 30000.0][i % 5]
        x = rng.normal(40.0 * (i % 3), scale, n).clip(-32768, 32767).astype("<i2")  # DC offsets too
        out.append(x.tobytes())
    return out


@pytest.mark.parametrize("rate", [8000, 16000])
@pytest.mark.parametrize("count", [1, 2, 7, 64, 300])  # 300: more than one numpy step
def test_batched_levels_are_exactly_the_single_frame_levels(rate: int, count: int) -> None:
    frames = _frames(rate, count)
    vad = EnergyVad(rate)
    assert frame_levels(frames, rate // 50) == [vad.level(f) for f in frames]  # bit for bit, not approx
    assert frame_levels([], rate // 50) == []


def test_a_tone_measures_its_level_in_a_batch() -> None:
    frames = [pcm(tone(1000, 0.02, 8000, db)) for db in (-20, -40)] + [bytes(320)]
    levels = frame_levels(frames, 160)
    assert levels[0] == pytest.approx(-20, abs=0.1)
    assert levels[1] == pytest.approx(-40, abs=0.1)
    assert levels[2] == -100.0, "digital silence is the floor value"


def test_update_level_is_update_with_the_level_given() -> None:
    frames = _frames(8000, 200, seed=5)
    a, b = EnergyVad(8000), EnergyVad(8000)
    for i, frame in enumerate(frames):
        mode = (i % 3 == 0, i % 4 == 0)
        assert a.update(frame, *mode) == b.update_level(frame, b.level(frame), *mode)
        assert (a.floor_db, a.level_db, a.speech_level_db) == (b.floor_db, b.level_db, b.speech_level_db)


def _speech_stream(rate: int) -> list[bytes]:
    """Noise, speech, then frames between the stop and the start thresholds (voiced only inside speech:
    the hysteresis shows whether each mode reached the VAD), a click, speech again."""
    floor = [pcm(noise(0.02, rate, -45, seed=i)) for i in range(40)]
    loud = [pcm(tone(440, 0.02, rate, -20))] * 30
    between = [pcm(tone(440, 0.02, rate, -37))] * 20
    return floor + loud + between + floor + loud[:3] + floor + loud + floor


@pytest.mark.parametrize("rate", [8000, 16000])
def test_the_endpointer_gives_the_same_events_with_batched_levels(rate: int) -> None:
    stream = _speech_stream(rate)
    plain, batched = Endpointer(rate), Endpointer(rate)
    settings = ListenSettings(trailing_silence_ms=300, no_input_ms=None)
    plain.listen(settings)
    batched.listen(settings)
    levels = frame_levels(stream, rate // 50)
    got_plain = [plain.feed(f) for f in stream]
    got_batched = [batched.feed(f, level) for f, level in zip(stream, levels, strict=True)]
    assert got_plain == got_batched
    assert any(e is not None for e in got_plain), "the stream has speech in it"


class _Scheduler:
    def __init__(self) -> None:
        self.pending: list[Callable[[], None]] = []

    def __call__(self, callback: Callable[[], None]) -> None:
        self.pending.append(callback)

    def run(self) -> None:
        todo, self.pending = self.pending, []
        for callback in todo:
            callback()


def test_one_flush_per_batch_frames_in_order_and_sizes_apart() -> None:
    scheduler = _Scheduler()
    batch = LevelBatch(scheduler)
    got: dict[str, list[tuple[bytes, float]]] = {"a": [], "b": [], "wide": []}
    narrow, wide = _frames(8000, 6), _frames(16000, 2)

    def to(key: str) -> Callable[[bytes, float], None]:
        return lambda f, lv: got[key].append((f, lv))

    for i, frame in enumerate(narrow):
        batch.add(to("ab"[i % 2]), frame)
    for frame in wide:
        batch.add(lambda f, lv: got["wide"].append((f, lv)), frame)
    assert len(scheduler.pending) == 1, "the first frame of a batch schedules its flush, the others do not"
    assert len(batch) == 8
    assert not any(got.values()), "nothing is delivered before the flush"
    scheduler.run()
    assert len(batch) == 0
    assert [f for f, _ in got["a"]] == narrow[0::2]
    assert [f for f, _ in got["b"]] == narrow[1::2]
    assert all(f is g for (f, _), g in zip(got["a"], narrow[0::2], strict=True)), "the same objects"
    assert [lv for _, lv in got["wide"]] == [EnergyVad(16000).level(f) for f in wide]
    assert (batch.flushes, batch.frames) == (2, 8), "one step per frame size"
    batch.add(lambda f, lv: None, narrow[0])
    assert len(scheduler.pending) == 1, "the next batch schedules its own flush"


def test_a_failing_sink_costs_only_its_own_frame(caplog: pytest.LogCaptureFixture) -> None:
    scheduler = _Scheduler()
    batch = LevelBatch(scheduler)
    seen: list[bytes] = []

    def broken(frame: bytes, level: float) -> None:
        raise RuntimeError("boom")

    frames = _frames(8000, 3)
    batch.add(lambda f, lv: seen.append(f), frames[0])
    batch.add(broken, frames[1])
    batch.add(lambda f, lv: seen.append(f), frames[2])
    with caplog.at_level(logging.ERROR, logger="ivr.media.batch"):
        scheduler.run()
    assert seen == [frames[0], frames[2]]
    assert "only that frame is lost" in caplog.text


def test_a_sink_failing_on_every_frame_logs_one_traceback_per_second_not_per_frame(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    scheduler = _Scheduler()
    batch = LevelBatch(scheduler, clock=lambda: now[0])

    def broken(frame: bytes, level: float) -> None:
        raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR, logger="ivr.media.batch"):
        for _ in range(5):  # five batches of 10 frames, 20 ms apart
            for frame in _frames(8000, 10):
                batch.add(broken, frame)
            scheduler.run()
            now[0] += 0.02
        records = [r for r in caplog.records if "handler failed" in r.getMessage()]
        assert len(records) == 1
        assert records[0].exc_info is not None
        now[0] += 1.0  # a second later the next failure is logged, with the count it stood for
        batch.add(broken, _frames(8000, 1)[0])
        scheduler.run()
    records = [r for r in caplog.records if "handler failed" in r.getMessage()]
    assert len(records) == 2
    assert "50 frames lost" in records[1].getMessage()
