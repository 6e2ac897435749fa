"""Signal generators and helpers shared by the media tests (deterministic: seeded noise)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ivr.media import Endpointer, Event, read_wav

DATA = Path(__file__).parent / "data"
Signal = npt.NDArray[np.float64]


def amp(dbfs: float) -> float:
    """RMS amplitude (in int16 units) of a signal at ``dbfs``."""
    return 32768.0 * 10 ** (dbfs / 20)


def tone(freq: float, secs: float, rate: int, dbfs: float = -20.0) -> Signal:
    t = np.arange(round(secs * rate)) / rate
    out: Signal = np.sin(2 * np.pi * freq * t) * amp(dbfs) * np.sqrt(2)
    return out


def noise(secs: float, rate: int, dbfs: float, seed: int = 1) -> Signal:
    return np.random.default_rng(seed).normal(0.0, amp(dbfs), round(secs * rate))


def silence(secs: float, rate: int) -> Signal:
    return np.zeros(round(secs * rate))


def level_dbfs(x: Signal | npt.NDArray[np.int16]) -> float:
    xf = np.asarray(x, dtype=np.float64)
    return float(10 * np.log10(np.mean(xf**2) / 32768.0**2 + 1e-20))


def pcm(x: Signal) -> bytes:
    return np.clip(np.round(x), -32768, 32767).astype("<i2").tobytes()


def samples(data: bytes) -> npt.NDArray[np.int16]:
    return np.frombuffer(data, dtype="<i2")


def speech(name: str, rate: int) -> Signal:
    """A committed espeak-ng fixture (trimmed: speech starts at sample 0) as float samples."""
    wav = read_wav(DATA / f"{name}_{rate // 1000}k.wav", rate=rate, channels=1)
    return samples(wav.pcm).astype(np.float64)


def frames(x: Signal, rate: int) -> Iterator[bytes]:
    """Cut a signal into 20 ms frames (the tail shorter than a frame is dropped)."""
    data = pcm(x)
    n = rate // 50 * 2
    for i in range(0, len(data) - n + 1, n):
        yield data[i : i + n]


def run(ep: Endpointer, fs: Iterable[bytes]) -> list[tuple[int, Event]]:
    """Feed frames; return (frame index, event) for every event."""
    out: list[tuple[int, Event]] = []
    for i, f in enumerate(fs):
        ev = ep.feed(f)
        if ev is not None:
            out.append((i, ev))
    return out
