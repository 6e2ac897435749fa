"""Adaptive-energy voice activity detection for 20 ms caller frames.

Why energy and not a trained VAD: it costs ~2 us a frame in numpy at 8 or
16 kHz (~0.3-0.5 us when the frames of every call that arrived in one loop
iteration are measured together with :func:`frame_levels`, see
``ivr.media.batch``), needs no native dependency, and exposes a threshold we can
raise while a prompt plays (the echo guard). Telephone audio is band-limited and
usually clean enough that "well above the line's own noise floor" is a good
speech cue.

Levels are computed in float64: the sums of int16 samples and of their squares
are integers below 2**53, so they are exact whatever the summation order, and a
frame measured alone (:meth:`EnergyVad.level`) or in a batch has the very same
level.

The noise floor is tracked in dB: it falls quickly towards quieter frames
(pauses between words reveal the floor within a few frames) and creeps up
slowly otherwise, more slowly still while frames look voiced, so steady noise
is learned within seconds but speech does not raise its own threshold.
Hysteresis: a frame must clear ``floor + start_margin_db`` to start or extend a
voiced run, but once speech is under way it only has to clear
``floor + stop_margin_db`` to keep it going. The echo guard raises the onset bar
while a prompt plays: statically, and optionally relative to the prompt's own
level when the player reports its frames through ``note_playback``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ivr.media.framing import FRAME_MS, frame_samples

_FULL_SCALE_SQ = 32768.0 * 32768.0
_SILENT_DB = -100.0


def _power_db(ss: float, s: float, n: int) -> float:
    """dBFS of a frame of ``n`` samples from its sum of squares and its sum (DC removed)."""
    power = (ss - s * s / n) / (n * _FULL_SCALE_SQ)
    return 10.0 * math.log10(power) if power > 1e-10 else _SILENT_DB


def frame_levels(frames: Sequence[bytes], samples: int) -> list[float]:
    """The level of each frame (``samples`` s16le samples each) in dBFS, DC removed, in one numpy step.

    The same value as :meth:`EnergyVad.level` gives each frame alone, at a fraction of the cost per
    frame: numpy's per-call overhead is paid once for the whole batch.
    """
    k = len(frames)
    if k <= 1:
        return [_single(samples).level(frames[0])] if k else []
    scratch = _scratch.get(samples)
    if scratch is None:
        scratch = _scratch[samples] = np.empty((_BATCH_ROWS, samples), dtype=np.float64)
    levels: list[float] = []
    for start in range(0, k, _BATCH_ROWS):
        part = frames[start : start + _BATCH_ROWS]
        x = scratch[: len(part)]
        np.copyto(x, np.frombuffer(b"".join(part), dtype="<i2").reshape(len(part), samples), casting="unsafe")
        squares: list[float] = np.einsum("ij,ij->i", x, x).tolist()
        sums: list[float] = x.sum(axis=1).tolist()
        levels += [_power_db(ss, s, samples) for ss, s in zip(squares, sums, strict=True)]
    return levels


_BATCH_ROWS = 256
"""Frames measured per numpy step; a bigger batch (after a stall) takes several."""
_scratch: dict[int, np.ndarray[tuple[int, int], np.dtype[np.float64]]] = {}
"""One float64 scratch matrix per frame size, reused: a fresh array per batch (over 128 KiB at 16 kHz)
would come from mmap and fault in every page of it again, which cost 2-3x the arithmetic in a busy server."""
_singles: dict[int, _Level] = {}


def _single(samples: int) -> _Level:
    """The measurer of frames of ``samples`` samples, shared: its scratch is used only for the length of
    one call of :meth:`_Level.level` (a batch of one is cheaper measured alone, too)."""
    level = _singles.get(samples)
    if level is None:
        level = _singles[samples] = _Level(samples)
    return level


class _Level:
    """One frame's level with preallocated scratch: row 0 receives the frame, row 1 is ones, so one
    matrix product gives (sum of squares, sum)."""

    __slots__ = ("_m", "_n", "_row")

    def __init__(self, samples: int) -> None:
        self._n = samples
        self._m = np.ones((2, samples), dtype=np.float64)
        self._row = self._m[0]

    def level(self, frame: bytes) -> float:
        np.copyto(self._row, np.frombuffer(frame, dtype="<i2"), casting="unsafe")
        ss, s = (self._m @ self._row).tolist()
        return _power_db(ss, s, self._n)


@dataclass(frozen=True, slots=True)
class VadSettings:
    """Thresholds in dB relative to full scale (dBFS, a full-scale square wave is 0)."""

    start_margin_db: float = 10.0
    """A frame is voiced when this far above the noise floor (speech onset)."""
    stop_margin_db: float = 6.0
    """Inside speech, a frame still counts as voiced this far above the floor (hysteresis)."""
    min_level_dbfs: float = -50.0
    """Nothing quieter is speech, however low the floor (digital silence, comfort noise)."""
    floor_min_dbfs: float = -75.0
    floor_max_dbfs: float = -30.0
    """Cap: sustained loud noise stays 'voiced' and ends in a max-length cut, not in deafness."""
    floor_init_max_dbfs: float = -45.0
    """The first frame seeds the floor, but no higher than this: a call may open with speech."""
    floor_fall: float = 0.3
    """Fraction of the gap closed per frame when a frame is below the floor."""
    floor_rise_db_per_s: float = 3.0
    """Upward creep of the floor over unvoiced frames."""
    floor_rise_voiced_db_per_s: float = 1.0
    """Upward creep over voiced frames: slow, so speech does not lift its own threshold."""
    echo_margin_db: float = 20.0
    """Echo guard: onset margin above the floor while our prompt plays."""
    echo_min_level_dbfs: float = -35.0
    """Echo guard: absolute onset level while our prompt plays (prompt echo is quieter)."""
    echo_return_loss_db: float = 12.0
    """Echo guard with a playback reference: onset must exceed the prompt's own level minus this."""
    echo_release_db_per_s: float = 30.0
    """Decay of the playback reference, slow enough to cover the echo's round-trip delay."""
    echo_speech_margin_db: float = 10.0
    """Static guard once the caller has been heard: the onset bar drops to this far below the caller's
    own speech level, so a quiet caller (or a leg that arrives 6 dB down) can still barge in..."""
    echo_min_level_floor_dbfs: float = -45.0
    """...but never below this."""


class FrameVad(Protocol):
    """What the endpointer needs from a voice activity detector (energy or neural).

    ``update`` is called once per inbound 20 ms frame, in order, and must be cheap (the endpointer runs on
    the inbound path); a detector whose model is heavy computes it elsewhere (see ``ivr.media.silero``).
    """

    rate: int

    @property
    def floor_db(self) -> float | None:
        """The noise floor estimate in dBFS (None before the first frame)."""
        ...

    @property
    def level_db(self) -> float:
        """The last frame's level in dBFS."""
        ...

    @property
    def name(self) -> str:
        """Short name for logs and benchmarks ("energy", "silero")."""
        ...

    def update(self, frame: bytes, in_speech: bool = False, echo_guard: bool = False) -> bool:
        """Classify one frame (True: voiced) in the given mode, adapting any internal state.

        A detector may also offer ``update_level(frame, level, in_speech, echo_guard)``, the same with the
        frame's energy level already measured (:func:`frame_levels`, batched over calls): the endpointer
        uses it when the level comes with the frame, and ``update`` otherwise.
        """
        ...

    def note_playback(self, frame: bytes) -> None:
        """A frame we are sending to the caller (the echo guard's reference)."""
        ...

    def note_playback_level(self, level: float) -> None:
        """``note_playback`` for a frame whose level (dBFS, DC removed) the caller already knows."""
        ...

    def reset_echo(self) -> None:
        """Our prompt stopped: forget the playback reference."""
        ...


class EnergyVad:
    """Per-frame voiced/unvoiced decision with an adaptive noise floor.

    One instance per call direction; it measures with scratch buffers shared by
    every call of its frame size, so a frame costs one int16->float64 copy and one
    small matrix product, no allocation beyond numpy's result. :meth:`update_level` skips even that when the level was
    measured for a batch of frames (:func:`frame_levels`).
    """

    __slots__ = (
        "_fall",
        "_level",
        "_release",
        "_rise",
        "_rise_voiced",
        "echo_ref_db",
        "floor_db",
        "level_db",
        "rate",
        "settings",
        "speech_level_db",
    )

    def __init__(self, rate: int, settings: VadSettings | None = None, *, frame_ms: int = FRAME_MS) -> None:
        self.rate = rate
        self.settings = s = settings or VadSettings()
        self._level = _single(frame_samples(rate, frame_ms))  # scratch shared by every call of this size
        frames_per_s = 1000 / frame_ms
        self._rise = s.floor_rise_db_per_s / frames_per_s
        self._rise_voiced = s.floor_rise_voiced_db_per_s / frames_per_s
        self._fall = s.floor_fall
        self._release = s.echo_release_db_per_s / frames_per_s
        self.echo_ref_db = _SILENT_DB
        """Peak-held level of our own outgoing audio (see ``note_playback``)."""
        self.floor_db: float | None = None
        """Current noise-floor estimate (None until the first frame)."""
        self.level_db = _SILENT_DB
        """Level of the last frame, DC removed."""
        self.speech_level_db: float | None = None
        """The caller's speech level: a running mean over voiced frames inside speech (None: not heard yet)."""

    @property
    def name(self) -> str:
        return "energy"

    def reset_echo(self) -> None:
        self.echo_ref_db = _SILENT_DB

    def level(self, frame: bytes) -> float:
        """Mean power of one frame in dBFS, DC offset removed."""
        return self._level.level(frame)

    def note_playback(self, frame: bytes) -> None:
        """Track the level of a frame we are sending to the caller (optional, for the echo guard).

        Instant attack, slow release: the guard threshold follows the prompt, so a
        loud prompt's echo is rejected even when it is above the static guard level.
        """
        self.note_playback_level(self.level(frame))

    def note_playback_level(self, level: float) -> None:
        ref = self.echo_ref_db - self._release
        self.echo_ref_db = level if level > ref else ref

    def echo_min_level(self) -> float:
        """The static guard's absolute onset bar, lowered for a caller already heard to be quiet."""
        s = self.settings
        heard = self.speech_level_db
        if heard is None:
            return s.echo_min_level_dbfs
        return max(min(s.echo_min_level_dbfs, heard - s.echo_speech_margin_db), s.echo_min_level_floor_dbfs)

    def threshold(self, in_speech: bool = False, echo_guard: bool = False) -> float:
        """Level a frame must exceed to count as voiced in the given mode."""
        s = self.settings
        floor = self.floor_db if self.floor_db is not None else s.floor_min_dbfs
        if in_speech:
            return max(floor + s.stop_margin_db, s.min_level_dbfs)
        if echo_guard:
            return max(
                floor + s.echo_margin_db,
                self.echo_min_level(),
                s.min_level_dbfs,
                self.echo_ref_db - s.echo_return_loss_db,
            )
        return max(floor + s.start_margin_db, s.min_level_dbfs)

    def update(self, frame: bytes, in_speech: bool = False, echo_guard: bool = False) -> bool:
        """Classify one frame and adapt the noise floor; True if voiced."""
        return self.update_level(frame, self.level(frame), in_speech, echo_guard)

    def update_level(
        self, frame: bytes, level: float, in_speech: bool = False, echo_guard: bool = False
    ) -> bool:
        """:meth:`update` for a frame whose level is already known (``frame_levels`` of a batch)."""
        self.level_db = level
        s = self.settings
        floor = self.floor_db
        if floor is None:
            floor = min(max(level, s.floor_min_dbfs), s.floor_init_max_dbfs)
        if in_speech:
            voiced = level > floor + s.stop_margin_db and level > s.min_level_dbfs
        elif echo_guard:
            voiced = (
                level > floor + s.echo_margin_db
                and level > self.echo_min_level()
                and level > s.min_level_dbfs
                and level > self.echo_ref_db - s.echo_return_loss_db
            )
        else:
            voiced = level > floor + s.start_margin_db and level > s.min_level_dbfs
        if in_speech and voiced:
            known = self.speech_level_db
            self.speech_level_db = level if known is None else known + 0.05 * (level - known)
        if level < floor:
            floor += (level - floor) * self._fall
            if floor < s.floor_min_dbfs:
                floor = s.floor_min_dbfs
        else:
            floor += min(level - floor, self._rise_voiced if voiced else self._rise)
            if floor > s.floor_max_dbfs:
                floor = s.floor_max_dbfs
        self.floor_db = floor
        return voiced
