"""Barge-in that ignores the prompt's own echo and short backchannels.

Carriers run no echo cancellation, so while a prompt plays the caller's line carries that prompt back,
delayed and attenuated. ``EchoCheck`` learns that echo path from the audio itself (delay from the
correlation of the two level envelopes, return loss from their difference while only the prompt talks)
and says whether an inbound frame holds more than the predicted echo: the caller's own voice. It works
on 20 ms frame levels, not samples: a line echo after codecs and carrier gain stages is not the linear,
time-invariant path a sample-domain canceller assumes, but its level envelope follows the prompt's.

``BackchannelFilter`` decides, from voiced time alone, whether speech over a prompt is an interruption
or a backchannel ("mm-hm", "okay", "yeah"): the prompt pauses at once (within the frame that confirmed
speech), resumes if the speech ends within ``max_backchannel_ms``, and is dropped when speech goes on.

Both are pure and fed one frame at a time; the runtime wires them (README, Turn-taking).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ivr.media.framing import FRAME_MS, frame_samples
from ivr.media.vad import FrameVad

_SILENT_DB = -100.0


def frame_level_db(frame: bytes) -> float:
    """Mean power of one s16le frame in dBFS, DC removed (as ``EnergyVad.level``)."""
    x = np.frombuffer(frame, dtype="<i2").astype(np.float32)
    if x.size == 0:
        return _SILENT_DB
    p = float(np.var(x)) / (32768.0 * 32768.0)
    return 10.0 * math.log10(p) if p > 1e-10 else _SILENT_DB


@dataclass(frozen=True, slots=True)
class EchoSettings:
    max_delay_ms: int = 400
    """Longest echo round trip looked for (carrier paths: 20-300 ms)."""
    margin_db: float = 6.0
    """A frame is the caller's own when this far above the predicted echo..."""
    min_level_dbfs: float = -50.0
    """...and at least this loud (as ``VadSettings.min_level_dbfs``: line noise is nobody's voice)."""
    initial_return_loss_db: float = 6.0
    """Echo return loss assumed until measured: pessimistic (a strong echo), so nothing barges in early."""
    min_return_loss_db: float = 0.0
    max_return_loss_db: float = 40.0
    active_dbfs: float = -45.0
    """Prompt frames at least this loud teach the echo path."""
    learn_frames: int = 25
    """Prompt-only frames needed before the measured delay and loss replace the assumptions."""
    smoothing: float = 0.05


class EchoCheck:
    """Per call: ``played(frame)`` for every frame sent, ``heard(frame)`` for every frame received.

    ``heard`` returns True when the frame is louder than the prompt's echo could make it (and not
    silence): use it as an extra condition on speech onset while a prompt plays.
    """

    def __init__(self, rate: int, settings: EchoSettings | None = None, *, frame_ms: int = FRAME_MS) -> None:
        frame_samples(rate, frame_ms)
        self.rate = rate
        self.settings = s = settings or EchoSettings()
        self._lags = max(1, s.max_delay_ms // frame_ms)
        self._played: deque[float] = deque([_SILENT_DB] * (self._lags + 2), maxlen=self._lags + 2)
        self._hist_p: deque[list[float]] = deque(maxlen=100)
        self._hist_h: deque[float] = deque(maxlen=100)
        self.delay_frames: int | None = None
        """Measured echo delay in frames (None: not yet measured)."""
        self.return_loss_db = s.initial_return_loss_db
        self.learned = 0
        self._digital_silence = 0
        self.last_margin_db = 0.0
        """How far the last heard frame was above the predicted echo."""
        self._since_sound = self._lags + 2
        """Frames played since the last one above digital silence (the window's length or more: the
        window is all silence, so there is no echo to predict and nothing to learn: the usual case while
        a call listens, answered without looking at the window)."""
        self._since_active = self._lags + 2
        """Frames played since the last one at ``active_dbfs`` or louder."""

    def played(self, frame: bytes) -> None:
        self.played_db(frame_level_db(frame))

    def played_db(self, level: float) -> None:
        """A frame played, by its level (``frame_level_db``; -100 for silence)."""
        self._played.appendleft(level)  # index k: the frame played k frames ago
        self._since_sound = 0 if level > _SILENT_DB else self._since_sound + 1
        self._since_active = 0 if level >= self.settings.active_dbfs else self._since_active + 1

    def predicted_echo_db(self) -> float:
        """The loudest echo the recent prompt can produce in the frame now arriving."""
        p = self._played
        if self._since_sound >= len(p):
            return _SILENT_DB
        if self.delay_frames is None:
            window = max(p)  # delay unknown: any recent prompt frame may be echoing now
        else:
            d = self.delay_frames
            window = max(p[k] for k in range(max(0, d - 1), min(len(p), d + 2)))
        return window - self.return_loss_db if window > _SILENT_DB else _SILENT_DB

    def heard(self, frame: bytes) -> bool:
        return self.heard_level(frame_level_db(frame))

    def heard_level(self, level: float) -> bool:
        """:meth:`heard` for a frame whose level (``frame_level_db``) is already known: measuring it again
        with numpy cost ~20-40 us a frame, more than everything else a listening call does per frame."""
        s = self.settings
        echo = self.predicted_echo_db()
        self.last_margin_db = level - echo
        own = level > echo + s.margin_db and level > s.min_level_dbfs
        if not own:
            self._learn(level)
        return own

    def _learn(self, level: float) -> None:
        """Frames that look like echo alone refine the delay and the return loss."""
        s = self.settings
        if self._since_active > self._lags:  # nothing loud enough among the lags looked at
            return
        recent = list(self._played)[: self._lags + 1]
        if level <= _SILENT_DB:
            # Digital silence while the prompt plays: this line carries no echo at all (a leg that sends
            # zeros, a simulated caller). After as many such frames as learning takes, say so.
            self._digital_silence += 1
            if self._digital_silence >= s.learn_frames and self.delay_frames is None:
                self.return_loss_db = s.max_return_loss_db
            return
        self._digital_silence = 0
        self._hist_p.append(recent)
        self._hist_h.append(level)
        self.learned += 1
        if self.learned < s.learn_frames:
            return
        if self.learned % 5 == 0 or self.delay_frames is None:
            self.delay_frames = self._best_lag()
        d = self.delay_frames
        if d is not None and recent[d] >= s.active_dbfs:
            loss = recent[d] - level
            if self.learned == s.learn_frames:
                self.return_loss_db = loss
            else:
                self.return_loss_db += s.smoothing * (loss - self.return_loss_db)
            self.return_loss_db = min(max(self.return_loss_db, s.min_return_loss_db), s.max_return_loss_db)

    def _best_lag(self) -> int | None:
        p = np.array(self._hist_p)  # (n, lags + 1) played levels at each lag
        h = np.array(self._hist_h)
        p = np.maximum(p, -80.0) - np.maximum(p, -80.0).mean(axis=0)
        h = h - h.mean()
        denom = np.sqrt((p * p).sum(axis=0) * float((h * h).sum())) + 1e-9
        corr = (p * h[:, None]).sum(axis=0) / denom
        best = int(np.argmax(corr))
        return best if corr[best] > 0.3 else None


@dataclass(frozen=True, slots=True)
class BackchannelSettings:
    max_backchannel_ms: int = 600
    """Speech over a prompt that ends within this is a backchannel: the prompt resumes (per step)."""
    end_silence_ms: int = 200
    """Silence that ends a backchannel."""


Decision = Literal["pause", "resume", "interrupt"]


class BackchannelFilter:
    """Interruption or backchannel, from voiced time (virtual time, one call to ``frame`` per 20 ms).

    ``start()`` when speech is confirmed over a prompt returns "pause" (stop sending the prompt now,
    keep its place). Then each ``frame(voiced)`` returns None until it decides: "interrupt" once
    speech has lasted longer than ``max_backchannel_ms`` (drop the prompt, take the answer), or
    "resume" when speech ended sooner (a backchannel: play on from where it paused).
    """

    def __init__(self, settings: BackchannelSettings | None = None, *, frame_ms: int = FRAME_MS) -> None:
        self.settings = settings or BackchannelSettings()
        self._fm = frame_ms
        self._active = False
        self._speech = 0
        self._silence = 0
        self.backchannels = 0

    @property
    def active(self) -> bool:
        return self._active

    def start(self, voiced_ms: int = 0) -> Decision:
        """Speech confirmed over the prompt (``voiced_ms`` already heard, e.g. the onset run)."""
        self._active = True
        self._speech = voiced_ms // self._fm
        self._silence = 0
        return "pause"

    def frame(self, voiced: bool) -> Decision | None:
        if not self._active:
            return None
        s = self.settings
        if voiced:
            self._speech += 1 + self._silence  # a short gap inside speech counts as speech
            self._silence = 0
            if self._speech * self._fm > s.max_backchannel_ms:
                self._active = False
                return "interrupt"
            return None
        self._silence += 1
        if self._silence * self._fm >= s.end_silence_ms:
            self._active = False
            self.backchannels += 1
            return "resume"
        return None


class LastVerdict:
    """A ``FrameVad`` that remembers its last verdict (the backchannel filter reads it), without an echo gate
    (the simulation's text carriers, which have no echo)."""

    def __init__(self, inner: FrameVad) -> None:
        self.inner = inner
        self.rate = inner.rate
        self.last = False
        inner_level = getattr(inner, "update_level", None)
        self._inner_level: Callable[[bytes, float, bool, bool], bool] = (
            inner_level if inner_level is not None else lambda frame, _level, s, e: inner.update(frame, s, e)
        )
        """The inner VAD with a measured level (looked up once, not per frame); one that measures
        itself ignores the level."""

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def floor_db(self) -> float | None:
        return self.inner.floor_db

    @property
    def level_db(self) -> float:
        return self.inner.level_db

    def note_playback(self, frame: bytes) -> None:
        self.inner.note_playback(frame)

    def note_playback_level(self, level: float) -> None:
        self.inner.note_playback_level(level)

    def reset_echo(self) -> None:
        self.inner.reset_echo()

    def update(self, frame: bytes, in_speech: bool = False, echo_guard: bool = False) -> bool:
        self.last = self.inner.update(frame, in_speech, echo_guard)
        return self.last

    def update_level(
        self, frame: bytes, level: float, in_speech: bool = False, echo_guard: bool = False
    ) -> bool:
        """:meth:`update` with the frame's level already measured (used when the inner VAD can)."""
        self.last = self._inner_level(frame, level, in_speech, echo_guard)
        return self.last


class EchoGate(LastVerdict):
    """A ``FrameVad`` that hears a frame as voice only when ``EchoCheck`` finds more in it than echo.

    Wraps the call's VAD (energy or Silero): ``Endpointer(rate, detector=EchoGate(vad))`` and
    ``endpointer.note_playback(frame)`` for every frame sent (silence included), and the prompt's echo,
    its tail after the prompt stops included, can neither barge in nor join the caller's utterance.
    """

    def __init__(self, inner: FrameVad, check: EchoCheck | None = None) -> None:
        super().__init__(inner)
        self.check = check or EchoCheck(inner.rate)

    @property
    def name(self) -> str:
        return f"{self.inner.name}+echo"

    def note_playback(self, frame: bytes) -> None:
        self.inner.note_playback(frame)
        self.check.played(frame)

    def note_playback_level(self, level: float) -> None:
        self.inner.note_playback_level(level)
        self.check.played_db(level)

    def reset_echo(self) -> None:
        self.inner.reset_echo()  # the echo path stays learned: the next prompt has the same line

    def update(self, frame: bytes, in_speech: bool = False, echo_guard: bool = False) -> bool:
        voiced = self.inner.update(frame, in_speech, echo_guard)
        own = self.check.heard(frame)
        self.last = voiced and own
        return self.last

    def update_level(
        self, frame: bytes, level: float, in_speech: bool = False, echo_guard: bool = False
    ) -> bool:
        """:meth:`update` with the frame's level already measured (batched: ``ivr.media.batch``, or the
        native reading thread)."""
        voiced = self._inner_level(frame, level, in_speech, echo_guard)
        own = self.check.heard_level(level)
        self.last = voiced and own
        return self.last
