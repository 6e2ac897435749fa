"""Per-frame cost of the media layer (run: .venv/bin/python benchmarks/media_bench.py).

The per-frame budget at 500 calls per core is ~20 us for everything (see
shared notes on performance), so these numbers say how much of it the media
layer takes. Each case runs REPEATS times; the median is reported (host CPU
steal moves single runs), with the best run beside it.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

from ivr.media import (
    Endpointer,
    EnergyVad,
    Framer,
    ListenSettings,
    ResampleStream,
    alaw_decode,
    alaw_encode,
    frame_bytes,
    ulaw_decode,
    ulaw_encode,
)
from ivr.media.bargein import EchoCheck, EchoGate, LastVerdict
from ivr.media.vad import frame_levels

REPEATS = 7


def talk_and_pause(rate: int, secs: float = 10.0) -> list[bytes]:
    """Alternating 1.5 s 'speech' (modulated tone + noise) and 1 s pauses over low noise: both endpointer
    states get exercised, and events fire as in a real call."""
    rng = np.random.default_rng(0)
    n = int(secs * rate)
    t = np.arange(n) / rate
    gate = (t % 2.5) < 1.5
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)  # syllable-rate modulation
    x = gate * envelope * 3000 * np.sin(2 * np.pi * 300 * t) + rng.normal(0, 30, n)
    data = np.clip(x, -32768, 32767).astype("<i2").tobytes()
    fb = frame_bytes(rate)
    return [data[i : i + fb] for i in range(0, len(data) - fb + 1, fb)]


def bench(fn: Callable[[], int]) -> tuple[float, float]:
    """Run ``fn`` (returns how many frames it processed) REPEATS times; us/frame (median, best)."""
    fn()  # warm-up
    per: list[float] = []
    for _ in range(REPEATS):
        t0 = time.perf_counter_ns()
        n = fn()
        per.append((time.perf_counter_ns() - t0) / 1000 / n)
    return statistics.median(per), min(per)


def endpointer_case(rate: int, frames: list[bytes]) -> Callable[[], int]:
    ep = Endpointer(rate)
    settings = ListenSettings(trailing_silence_ms=500, no_input_ms=None)

    def go() -> int:
        ep.listen(settings)
        feed = ep.feed
        for f in frames:
            if feed(f) is not None and not ep.listening:
                ep.listen(settings)
        return len(frames)

    return go


def measured_case(rate: int, frames: list[bytes], *, echo_gate: bool) -> Callable[[], int]:
    """What a listening call runs per frame whose level the native reader measured: the endpointer on the
    energy VAD, with the echo gate in front (a call whose caller audio is speech) or not (sim-text)."""
    vad = EnergyVad(rate)
    ep = Endpointer(rate, detector=EchoGate(vad) if echo_gate else LastVerdict(vad))
    levels = frame_levels(frames, len(frames[0]) // 2)
    pairs = list(zip(frames, levels, strict=True))
    settings = ListenSettings(trailing_silence_ms=500, no_input_ms=None)

    def go() -> int:
        ep.listen(settings)
        feed = ep.feed
        for f, level in pairs:
            if feed(f, level) is not None and not ep.listening:
                ep.listen(settings)
        return len(frames)

    return go


def echo_case(rate: int, frames: list[bytes], *, measured: bool) -> Callable[[], int]:
    """The echo check alone: given the frame (it measures it) or its level (measured already)."""
    check = EchoCheck(rate)
    levels = frame_levels(frames, len(frames[0]) // 2)

    def go() -> int:
        if measured:
            for level in levels:
                check.heard_level(level)
        else:
            for f in frames:
                check.heard(f)
        return len(frames)

    return go


def playback_case(rate: int, frames: list[bytes]) -> Callable[[], int]:
    ep = Endpointer(rate)

    def go() -> int:
        note = ep.note_playback
        for f in frames:
            note(f)
        return len(frames)

    return go


def vad_case(rate: int, frames: list[bytes]) -> Callable[[], int]:
    vad = EnergyVad(rate)

    def go() -> int:
        update = vad.update
        for f in frames:
            update(f)
        return len(frames)

    return go


def resample_case(in_rate: int, out_rate: int, chunk_ms: int = 20) -> Callable[[], int]:
    """Cost per 20 ms of audio pushed through ResampleStream in chunks of ``chunk_ms`` (+ re-framing)."""
    secs = 10
    rng = np.random.default_rng(1)
    data = rng.normal(0, 3000, in_rate * secs).astype("<i2").tobytes()
    step = in_rate * chunk_ms // 1000 * 2

    def go() -> int:
        r = ResampleStream(in_rate, out_rate)
        push = r.push
        for i in range(0, len(data), step):
            push(data[i : i + step])
        r.flush()
        return secs * 50

    return go


def codec_case(fn: Callable[[bytes], bytes], data: bytes, n: int = 5000) -> Callable[[], int]:
    def go() -> int:
        for _ in range(n):
            fn(data)
        return n

    return go


def framer_case(rate: int) -> Callable[[], int]:
    fb = frame_bytes(rate)
    chunk = bytes(fb * 5 + 7)  # uneven chunks, as TTS sends them

    def go() -> int:
        f = Framer(fb)
        for _ in range(1000):
            f.push(chunk)
        return 5000

    return go


def main() -> None:
    global REPEATS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--repeats", type=int, default=REPEATS)
    REPEATS = ap.parse_args().repeats

    cases: list[tuple[str, Callable[[], int]]] = []
    for rate in (8000, 16000):
        frames = talk_and_pause(rate)
        cases.append((f"EnergyVad.update        {rate // 1000:>2} kHz", vad_case(rate, frames)))
        cases.append((f"Endpointer.feed         {rate // 1000:>2} kHz", endpointer_case(rate, frames)))
        cases.append((f"Endpointer.note_playback{rate // 1000:>2} kHz", playback_case(rate, frames)))
        cases.append(
            (f"Endpointer.feed, level  {rate // 1000:>2} kHz", measured_case(rate, frames, echo_gate=False))
        )
        cases.append(
            (f"  + echo gate, level    {rate // 1000:>2} kHz", measured_case(rate, frames, echo_gate=True))
        )
        cases.append(
            (f"EchoCheck.heard (frame) {rate // 1000:>2} kHz", echo_case(rate, frames, measured=False))
        )
        cases.append(
            (f"EchoCheck.heard_level   {rate // 1000:>2} kHz", echo_case(rate, frames, measured=True))
        )
    for a, b in (
        (24000, 8000),
        (24000, 16000),
        (8000, 24000),
        (16000, 24000),
        (8000, 16000),
        (16000, 8000),
        (8000, 8000),
    ):
        cases.append((f"ResampleStream 20ms {a // 1000:>2}k->{b // 1000:>2}k", resample_case(a, b)))
    cases.append(("ResampleStream 100ms 24k->8k (per 20ms)", resample_case(24000, 8000, 100)))
    pcm8 = bytes(320)
    law8 = bytes(160)
    cases += [
        ("ulaw_encode 20ms @8k", codec_case(ulaw_encode, pcm8)),
        ("ulaw_decode 20ms @8k", codec_case(ulaw_decode, law8)),
        ("alaw_encode 20ms @8k", codec_case(alaw_encode, pcm8)),
        ("alaw_decode 20ms @8k", codec_case(alaw_decode, law8)),
        ("Framer.push (5.x frames/chunk) 8k", framer_case(8000)),
    ]
    print(f"{'case':<42}{'us/frame (median)':>18}{'best':>8}")
    for name, fn in cases:
        med, best = bench(fn)
        print(f"{name:<42}{med:>18.2f}{best:>8.2f}")


if __name__ == "__main__":
    main()
