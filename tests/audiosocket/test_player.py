"""Paced playback and the shared frame clock, in virtual time (no sleeping, no wall-clock asserts)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest

from ivr.audiosocket.clock import FrameClock, ManualClock
from ivr.audiosocket.player import Player
from ivr.audiosocket.protocol import Audio, FrameDecoder
from ivr.audiosocket.stats import LatencyHistogram
from ivr.transport import PlayoutState

PERIOD = 0.020


class Sink:
    """Collects what a player writes, with the virtual time of each write."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.writes: list[tuple[float, bytes]] = []

    def __call__(self, message: bytes) -> None:
        self.writes.append((self.clock.now(), message))

    def payloads(self) -> list[bytes]:
        out = []
        for _, message in self.writes:
            [frame] = FrameDecoder().feed(message)
            assert isinstance(frame, Audio)
            out.append(bytes(frame.payload))
        return out


def make(rate: int = 8000, wake_delay: float = 0.0) -> tuple[ManualClock, FrameClock, Player, Sink]:
    clock = ManualClock(wake_delay=(lambda: wake_delay) if wake_delay else None)
    frame_clock = FrameClock(clock)
    sink = Sink(clock)
    player = Player(sink, rate, clock)
    frame_clock.add(player)
    return clock, frame_clock, player, sink


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


@pytest.mark.parametrize(("rate", "size"), [(8000, 320), (16000, 640)])
async def test_silence_from_the_start_then_prompt_frames_with_padding(rate: int, size: int) -> None:
    clock, _, player, sink = make(rate)
    clock.advance(0.099)  # the first tick is due at once: 5 ticks in 0..99 ms
    assert len(sink.writes) == 5, "silence flows before anything plays"
    assert all(p == bytes(size) for p in sink.payloads())
    pcm = bytes(range(1, 251)) * (((size * 50 + size // 4) // 250) + 1)
    pcm = pcm[: size * 50 + size // 4]  # 1 s plus a quarter frame
    playback = player.play(pcm)
    clock.advance(1.2)
    result = await playback.wait()
    assert result.state is PlayoutState.COMPLETED
    assert result.frames == 51
    payloads = sink.payloads()[5:]
    assert all(len(p) == size for p in payloads)
    assert b"".join(payloads[:51])[: len(pcm)] == pcm
    assert payloads[50][size // 4 :] == bytes(size - size // 4), "last frame padded with silence"
    assert payloads[51:] == [bytes(size)] * (len(payloads) - 51), "back to silence after the prompt"


async def test_deadlines_are_absolute_under_jitter() -> None:
    rng = random.Random(7)
    clock = ManualClock(wake_delay=lambda: rng.uniform(0, 0.008))
    frame_clock = FrameClock(clock)
    sink = Sink(clock)
    player = Player(sink, 8000, clock)
    frame_clock.add(player)
    clock.advance(60.0)  # one virtual minute
    assert player.first_deadline is not None
    assert player.last_deadline is not None
    # 3000 frames a minute, whatever each wake-up's lateness: no drift accumulates.
    assert player.frames_sent in (3000, 3001)
    n = player.frames_sent - 1
    assert player.last_deadline == pytest.approx(player.first_deadline + n * PERIOD, abs=1e-9)
    for i, (t, _) in enumerate(sink.writes):
        lateness = t - (player.first_deadline + i * PERIOD)
        assert 0 <= lateness <= 0.008 + 1e-9
    summary = player.lateness.summary()
    assert 3.0 < summary.p50_ms < 5.0
    assert summary.max_ms <= 8.0 + 1e-6


async def test_stall_is_caught_up_at_most_max_catchup_frames() -> None:
    delays = iter([0.0, 0.0, 0.070] + [0.0] * 100)
    clock = ManualClock(wake_delay=lambda: next(delays))
    frame_clock = FrameClock(clock, max_catchup=3)
    sink = Sink(clock)
    player = Player(sink, 8000, clock)
    frame_clock.add(player)
    clock.advance(0.030)
    assert len(sink.writes) == 2
    clock.advance(0.100)  # the third wake-up is 70 ms late: 3 periods due, 1 more skipped
    times = [t for t, _ in sink.writes]
    assert times[2] == times[3] == times[4], "catch-up frames go out together"
    assert frame_clock.skipped_periods == 1
    assert player.last_deadline is not None
    deadlines = [player.first_deadline]
    assert deadlines[0] is not None
    # After the stall the cadence continues on the same phase.
    assert ((player.last_deadline - deadlines[0]) / PERIOD) == pytest.approx(
        round((player.last_deadline - deadlines[0]) / PERIOD), abs=1e-6
    )


async def test_stop_takes_effect_before_the_next_frame() -> None:
    clock, _, player, sink = make(16000)
    playback = player.play(b"\x11\x22" * 16000 * 5)  # 5 s
    clock.advance(0.199)
    sent = playback.frames
    assert sent == 10
    playback.stop()
    clock.advance(0.021)
    assert (await playback.wait()).state is PlayoutState.CLEARED
    assert playback.frames == sent
    assert sink.payloads()[-1] == bytes(640), "the very next frame is silence"
    assert not player.is_playing


async def test_stop_all_clears_queued_prompts() -> None:
    clock, _, player, sink = make()
    first = player.play(b"\x01\x00" * 8000)
    second = player.play(b"\x02\x00" * 8000)
    clock.advance(0.1)
    assert player.stop_all() == 2
    clock.advance(0.1)
    assert (await first.wait()).state is PlayoutState.CLEARED
    assert (await second.wait()).state is PlayoutState.CLEARED
    assert b"\x02\x00" not in b"".join(sink.payloads())


async def test_queued_prompts_follow_each_other_without_a_gap() -> None:
    clock, _, player, sink = make()
    player.play(b"\x01\x00" * 160)
    player.play(b"\x02\x00" * 160)
    clock.advance(0.041)
    assert sink.payloads()[:2] == [b"\x01\x00" * 160, b"\x02\x00" * 160]


async def chunks(data: bytes, sizes: list[int], gate: asyncio.Event | None = None) -> AsyncIterator[bytes]:
    pos = 0
    i = 0
    while pos < len(data):
        size = sizes[i % len(sizes)]
        yield data[pos : pos + size]
        pos += size
        i += 1
        if gate is not None and pos >= len(data) // 2 and not gate.is_set():
            await gate.wait()
        await asyncio.sleep(0)


async def test_stream_waits_for_prebuffer_then_keeps_cadence_on_underrun() -> None:
    clock, _, player, sink = make(8000)
    pcm = bytes((i * 7) % 256 for i in range(320 * 20))  # 400 ms
    gate = asyncio.Event()
    playback = player.play(chunks(pcm, [333, 1, 999, 77]), prebuffer_ms=60)
    playback_gated = player.play(chunks(pcm, [500], gate))
    for _ in range(40):
        await settle()
        clock.advance(PERIOD)
    first = await playback.wait()
    assert first.completed
    assert first.frames == 20
    await settle()
    clock.advance(PERIOD * 5)
    assert playback_gated.underruns > 0, "half of the second stream is held back"
    ticks_before = len(sink.writes)
    clock.advance(PERIOD * 10)
    assert len(sink.writes) == ticks_before + 10, "underrun sends silence on cadence, no burst"
    gate.set()
    for _ in range(30):
        await settle()
        clock.advance(PERIOD)
    second = await playback_gated.wait()
    assert second.completed
    joined = b"".join(p for p in sink.payloads() if p != bytes(320))
    assert joined == pcm + pcm


async def test_stream_failure_plays_what_arrived_and_reports_it() -> None:
    clock, _, player, _ = make(8000)

    async def broken() -> AsyncIterator[bytes]:
        yield bytes(320 * 3)
        raise ConnectionError("TTS stream cut")

    playback = player.play(broken())
    for _ in range(10):
        await settle()
        clock.advance(PERIOD)
    result = await playback.wait()
    assert result.state is PlayoutState.FAILED
    assert result.frames == 3
    assert isinstance(result.error, ConnectionError)


async def test_members_keep_their_own_phase_and_spread_over_slots() -> None:
    clock = ManualClock()
    frame_clock = FrameClock(clock, slots=20, spread=4)
    sinks = []
    for i in range(40):
        sink = Sink(clock)
        player = Player(sink, 8000, clock)
        frame_clock.add(player)
        sinks.append(sink)
        if i % 10 == 9:
            clock.advance(0.0053)  # later arrivals land in later slots
    clock.advance(0.2)
    phases = {round((s.writes[0][0] - 1000.0) % PERIOD, 4) for s in sinks}
    assert len(phases) >= 8, phases
    for sink in sinks:
        gaps = {round(b[0] - a[0], 9) for a, b in zip(sink.writes, sink.writes[1:], strict=False)}
        assert gaps == {PERIOD}


def test_histogram_percentiles() -> None:
    hist = LatencyHistogram()
    for i in range(1000):
        hist.record(i / 1_000_000 * 10)  # 0 .. 9.99 ms
    hist.record(-0.001)
    s = hist.summary()
    assert s.count == 1001
    assert 4.8 <= s.p50_ms <= 5.2
    assert 9.7 <= s.p99_ms <= 10.0
    assert s.max_ms == pytest.approx(9.99)


async def test_players_share_an_in_memory_prompt_by_reference() -> None:
    """Two calls playing one prompt the cache holds in memory hold the very same bytes object: the player
    frames it by offset and copies nothing but the 20 ms frame it writes."""
    clock = ManualClock()
    frame_clock = FrameClock(clock)
    pcm = bytes((i * 13) % 251 for i in range(640 * 100 + 17))  # 2 s at 16 kHz and a bit
    sinks, playbacks = [], []
    for _ in range(2):
        sink = Sink(clock)
        player = Player(sink, 16000, clock)
        frame_clock.add(player)
        playbacks.append(player.play(pcm))
        sinks.append(sink)
    clock.advance(0.5)
    assert playbacks[0].source is pcm, "no per-call copy"
    assert playbacks[1].source is pcm
    clock.advance(2.0)
    for sink, playback in zip(sinks, playbacks, strict=True):
        assert (await playback.wait()).frames == 101
        assert playback.source is None, "the reference goes with the prompt's end"
        heard = b"".join(p for p in sink.payloads() if p != bytes(640))
        assert heard.rstrip(b"\0") == pcm.rstrip(b"\0")


async def test_a_stream_s_chunks_are_kept_by_reference_and_framed_across_them() -> None:
    clock, _, player, sink = make(8000)
    pcm = bytes((i * 7) % 256 for i in range(320 * 10 + 5))
    parts = [pcm[i : i + 123] for i in range(0, len(pcm), 123)]  # chunks that never line up with frames
    held: list[object] = []

    async def source() -> AsyncIterator[bytes]:
        for part in parts:
            yield part
            held.append(playback.source)

    playback = player.play(source(), prebuffer_ms=20)
    for _ in range(20):
        await settle()
        clock.advance(PERIOD)
    assert (await playback.wait()).frames == 11
    assert any(h is part for h in held for part in parts), "queued chunks are the stream's own objects"
    heard = b"".join(sink.payloads())
    assert pcm in heard
    assert heard[heard.index(pcm) + len(pcm) :][: 320 - 5] == bytes(320 - 5), "last frame padded"


async def test_a_mutable_chunk_is_copied_before_the_stream_reuses_it() -> None:
    clock, _, player, sink = make(8000)
    buffer = bytearray(320)

    async def source() -> AsyncIterator[bytearray]:
        for value in (1, 2, 3):
            buffer[:] = bytes([value]) * 320
            yield buffer  # the same buffer, refilled

    playback = player.play(source(), prebuffer_ms=60)  # type: ignore[arg-type]
    for _ in range(10):
        await settle()
        clock.advance(PERIOD)
    assert (await playback.wait()).frames == 3
    audio = [p for p in sink.payloads() if p != bytes(320)]
    assert audio == [bytes([1]) * 320, bytes([2]) * 320, bytes([3]) * 320]


def test_histogram_grows_only_as_far_as_its_largest_value() -> None:
    hist = LatencyHistogram()
    assert hist.summary().count == 0
    for _ in range(100):
        hist.record(0.0004)
    assert len(hist._bins) == 5, "a call with sub-ms lateness holds a handful of bins"
    hist.record(10.0)  # far past the last bin: counted in the overflow bin
    hist.record(0.3)
    assert len(hist._bins) == 2501
    assert hist.percentile(100) == 10.0
    other = LatencyHistogram()
    other.record(0.002)
    other.merge(hist)
    assert other.count == 103
    assert other.percentile(50) == pytest.approx(0.0005)
