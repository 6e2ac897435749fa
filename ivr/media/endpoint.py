"""Endpointing: turn a caller's frame stream into speech start/end events.

Fed one 20 ms frame at a time, counting time in frames (never the wall
clock), so tests are deterministic and the no-input timer runs in virtual time.
A pre-roll ring keeps the last ~300 ms of caller audio at all times, so an
utterance (or a barge-in) is captured from its true onset, not from the moment
the detector became sure. While a prompt plays, ``echo_guard`` raises the onset
threshold and the minimum voiced time so our own prompt's echo on the line does
not barge in; the caller has to speak up over it.

The voiced/unvoiced decision comes from any ``FrameVad`` (the adaptive-energy ``EnergyVad`` by default,
or ``ivr.media.silero.SileroVad``). With ``ListenSettings.pause_ms`` the endpointer also reports short
pauses inside speech (``SpeechPaused``/``SpeechResumed``) so an end-of-turn model can end the turn early
(``end_turn()``, see ``ivr.media.turn``); ``trailing_silence_ms`` stays the latest end.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ivr.media.framing import FRAME_MS, frame_bytes
from ivr.media.vad import EnergyVad, FrameVad, VadSettings


@dataclass(frozen=True, slots=True)
class ListenSettings:
    """Per-listen endpointing parameters (milliseconds, rounded up to whole frames)."""

    min_voiced_ms: int = 100
    """Voiced run needed to declare speech: shorter clicks and pops are ignored."""
    trailing_silence_ms: int = 800
    """Unvoiced time after speech that ends the utterance (shorter for yes/no, longer for numbers)."""
    max_utterance_ms: int = 15_000
    """Speech longer than this is cut and delivered as MaxLengthReached."""
    no_input_ms: int | None = 5_000
    """No speech onset within this long after the timer starts gives NoInput (None: wait forever)."""
    echo_min_voiced_ms: int = 200
    """Voiced run needed to declare speech while the echo guard is on."""
    postroll_ms: int = 200
    """Trailing silence kept in the utterance after the last voiced frame (soft word endings)."""
    echo_gap_ms: int = 100
    """While the static echo guard is on (no ``note_playback``), unvoiced gaps this short inside the
    onset run (the dips between syllables of a quiet caller) pause the run instead of restarting it."""
    pause_ms: int | None = None
    """Unvoiced time inside speech that reports ``SpeechPaused`` (for an end-of-turn model); None: never."""


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """The caller started speaking; ``at_ms`` is the onset, from listen start."""

    at_ms: int


@dataclass(frozen=True, slots=True)
class SpeechEnded:
    """End of utterance: ``pcm`` holds pre-roll + speech + post-roll, ``duration_ms`` its length."""

    pcm: bytes
    duration_ms: int
    started_at_ms: int
    ended_at_ms: int


@dataclass(frozen=True, slots=True)
class SpeechPaused:
    """``pause_ms`` of silence inside speech: ``pcm`` is the utterance so far (pre-roll, speech and the
    silence since), ``paused_at_ms`` the end of the last voiced frame. The turn may still go on."""

    pcm: bytes
    started_at_ms: int
    paused_at_ms: int


@dataclass(frozen=True, slots=True)
class SpeechResumed:
    """The caller spoke again after a ``SpeechPaused``; ``at_ms`` is the first voiced frame's start."""

    at_ms: int


@dataclass(frozen=True, slots=True)
class NoInput:
    """No speech started before the no-input timeout."""

    waited_ms: int


@dataclass(frozen=True, slots=True)
class MaxLengthReached:
    """Speech ran past ``max_utterance_ms``; ``pcm`` is what was captured."""

    pcm: bytes
    duration_ms: int
    started_at_ms: int


Event = SpeechStarted | SpeechEnded | NoInput | MaxLengthReached | SpeechPaused | SpeechResumed

_IDLE, _WAITING, _SPEECH, _DONE = 0, 1, 2, 3


def _frames(ms: int, frame_ms: int) -> int:
    return max(1, math.ceil(ms / frame_ms))


class Endpointer:
    """Speech start/end, no-input and max-length detection on one caller stream.

    One per call: the VAD's noise floor and the pre-roll ring persist across
    listens. ``listen()`` arms it for one utterance; ``feed()`` returns at most
    one event per frame; after SpeechEnded, NoInput or MaxLengthReached it is
    done until the next ``listen()``. While idle or done, frames still train the
    noise floor and fill the pre-roll.
    """

    __slots__ = (
        "_echo_guard",
        "_echo_min_voiced",
        "_end_frames",
        "_frame_ms",
        "_gap",
        "_gap_frames",
        "_max_frames",
        "_min_voiced",
        "_no_input",
        "_noted",
        "_onset",
        "_pause_frames",
        "_paused",
        "_postroll",
        "_ring",
        "_run",
        "_run_start",
        "_settings",
        "_silence",
        "_state",
        "_t",
        "_timer_start",
        "_update_level",
        "_utt",
        "_voiced_len",
        "frame_bytes",
        "preroll_frames",
        "rate",
        "vad",
        "voiced",
    )

    def __init__(
        self,
        rate: int,
        *,
        vad: VadSettings | None = None,
        detector: FrameVad | None = None,
        preroll_ms: int = 300,
        frame_ms: int = FRAME_MS,
    ) -> None:
        if detector is not None and detector.rate != rate:
            raise ValueError(f"the VAD runs at {detector.rate} Hz, the endpointer at {rate} Hz")
        self.rate = rate
        self._frame_ms = frame_ms
        self.frame_bytes = frame_bytes(rate, frame_ms)
        self.vad: FrameVad = detector if detector is not None else EnergyVad(rate, vad, frame_ms=frame_ms)
        self._update_level: Callable[[bytes, float, bool, bool], bool] | None = getattr(
            self.vad, "update_level", None
        )
        self.preroll_frames = math.ceil(preroll_ms / frame_ms) if preroll_ms > 0 else 0
        self.voiced = False
        """The VAD's verdict on the last frame fed (the backchannel filter reads it)."""
        self._settings = ListenSettings()
        self._ring: deque[bytes] = deque(maxlen=self.preroll_frames + 1)  # resized by listen()
        self._state = _IDLE
        self._echo_guard = False
        self._t = 0
        self._run = 0
        self._run_start = 0
        self._gap = 0
        self._gap_frames = 0
        self._onset = 0
        self._silence = 0
        self._timer_start: int | None = None
        self._utt: list[bytes] = []
        self._voiced_len = 0
        self._min_voiced = self._echo_min_voiced = self._end_frames = self._max_frames = self._postroll = 1
        self._no_input: int | None = None
        self._pause_frames: int | None = None
        self._paused = False
        self._noted = False

    # -- control ---------------------------------------------------------------------------------

    def listen(self, settings: ListenSettings | None = None, *, echo_guard: bool = False) -> None:
        """Arm for one utterance. With ``echo_guard`` (prompt still playing) the no-input
        timer waits for ``end_echo_guard()``; otherwise it starts now."""
        s = self._settings = settings or ListenSettings()
        fm = self._frame_ms
        self._min_voiced = _frames(s.min_voiced_ms, fm)
        self._end_frames = _frames(s.trailing_silence_ms, fm)
        self._max_frames = _frames(s.max_utterance_ms, fm)
        self._postroll = max(0, math.ceil(s.postroll_ms / fm))
        self._no_input = None if s.no_input_ms is None else _frames(s.no_input_ms, fm)
        self._pause_frames = None if s.pause_ms is None else _frames(s.pause_ms, fm)
        self._gap_frames = max(0, s.echo_gap_ms // fm)
        self._paused = False
        self._echo_min_voiced = max(self._min_voiced, _frames(s.echo_min_voiced_ms, fm))
        ring_len = self.preroll_frames + 2 * self._echo_min_voiced  # room for gaps in a guarded onset run
        if self._ring.maxlen != ring_len:
            self._ring = deque(self._ring, maxlen=ring_len)
        self._echo_guard = echo_guard
        self._state = _WAITING
        self._t = 0
        self._run = 0
        self._gap = 0
        self._silence = 0
        self._utt = []
        self._voiced_len = 0
        self._timer_start = None if echo_guard else 0

    def note_playback(self, frame: bytes) -> None:
        """Optional: show the echo guard each frame we play (same rate), so its threshold
        follows the prompt's level. ~2 us a frame; without it the static guard applies."""
        self._noted = True
        self.vad.note_playback(frame)

    def note_playback_level(self, level: float) -> None:
        """``note_playback`` for a frame whose level (dBFS) is already known."""
        self._noted = True
        self.vad.note_playback_level(level)

    def captured(self) -> bytes:
        """The utterance so far while in speech (pre-roll included), for a transcriber fed live."""
        return b"".join(self._utt) if self._state == _SPEECH else b""

    def end_echo_guard(self) -> None:
        """The prompt stopped (finished or barged in): normal thresholds, and the
        no-input timer starts now if it was waiting for the prompt."""
        self._echo_guard = False
        self._noted = False
        self.vad.reset_echo()
        if self._timer_start is None:
            self._timer_start = self._t

    def end_turn(self) -> SpeechEnded | None:
        """The turn is over now (an end-of-turn model said so during a pause): the utterance as
        ``SpeechEnded``, or None when not in speech (it already ended, or was never started)."""
        if self._state != _SPEECH:
            return None
        return self._finish_end()

    def stop(self) -> None:
        """Disarm and drop any partial utterance (the flow moved on)."""
        self._state = _IDLE
        self._utt = []

    @property
    def listening(self) -> bool:
        """Armed and not yet finished."""
        return self._state in (_WAITING, _SPEECH)

    @property
    def in_speech(self) -> bool:
        return self._state == _SPEECH

    @property
    def echo_guard(self) -> bool:
        return self._echo_guard

    @property
    def elapsed_ms(self) -> int:
        """Virtual time since ``listen()``."""
        return self._t * self._frame_ms

    # -- per frame -------------------------------------------------------------------------------

    def feed(self, frame: bytes, level: float | None = None) -> Event | None:
        """Process one caller frame (exactly ``frame_bytes`` of s16le); return at most one event.

        ``level``: the frame's energy in dBFS when it was measured already (``frame_levels`` over the
        frames of every call, see ``ivr.media.batch``); the VAD then skips its own measurement if it can.
        """
        if len(frame) != self.frame_bytes:
            raise ValueError(f"expected a {self.frame_bytes}-byte frame, got {len(frame)}")
        if type(frame) is not bytes:
            frame = bytes(frame)  # we keep references; a reused buffer would change under us
        self._ring.append(frame)
        with_level = self._update_level if level is not None else None
        lv = level if level is not None else 0.0
        state = self._state
        if state == _SPEECH:
            self._utt.append(frame)
            self._t += 1
            event: Event | None = None
            voiced = (
                with_level(frame, lv, True, False) if with_level is not None else self.vad.update(frame, True)
            )
            self.voiced = voiced
            if voiced:
                self._silence = 0
                self._voiced_len = len(self._utt)
                if self._paused:
                    self._paused = False
                    event = SpeechResumed((self._t - 1) * self._frame_ms)
            else:
                self._silence += 1
                if self._silence >= self._end_frames:
                    return self._finish_end()
                if (
                    self._pause_frames is not None
                    and not self._paused
                    and self._silence >= self._pause_frames
                ):
                    self._paused = True
                    fm = self._frame_ms
                    event = SpeechPaused(
                        b"".join(self._utt), self._onset * fm, (self._t - self._silence) * fm
                    )
            if self._t - self._onset >= self._max_frames:
                return self._finish_max()
            return event

        if state != _WAITING:
            self.voiced = (
                with_level(frame, lv, False, False) if with_level is not None else self.vad.update(frame)
            )
            return None
        self._t += 1
        guard = self._echo_guard
        voiced = (
            with_level(frame, lv, False, guard)
            if with_level is not None
            else self.vad.update(frame, False, guard)
        )
        self.voiced = voiced
        if voiced:
            if self._run == 0:
                self._run_start = self._t - 1
            self._run += 1
            self._gap = 0
            if self._run >= (self._echo_min_voiced if guard else self._min_voiced):
                return self._start()
        elif guard and self._run and self._gap < self._gap_frames and not self._noted:
            self._gap += 1
        else:
            self._run = 0
            self._gap = 0
        if (
            self._no_input is not None
            and self._timer_start is not None
            and self._t - self._timer_start >= self._no_input
        ):
            self._state = _DONE
            return NoInput((self._t - self._timer_start) * self._frame_ms)
        return None

    def _start(self) -> SpeechStarted:
        self._onset = self._run_start  # index of the first voiced frame (frames since listen)
        keep = self._t - self._run_start + self.preroll_frames
        ring = self._ring
        self._utt = list(ring)[-keep:] if keep < len(ring) else list(ring)
        self._voiced_len = len(self._utt)
        self._silence = 0
        self._paused = False
        self._state = _SPEECH
        return SpeechStarted(self._onset * self._frame_ms)

    def _finish_end(self) -> SpeechEnded:
        self._state = _DONE
        utt = self._utt
        cut = min(len(utt), self._voiced_len + self._postroll)
        pcm = b"".join(utt[:cut])
        self._utt = []
        fm = self._frame_ms
        last_voiced_t = self._t - self._silence
        return SpeechEnded(pcm, cut * fm, self._onset * fm, last_voiced_t * fm)

    def _finish_max(self) -> MaxLengthReached:
        self._state = _DONE
        pcm = b"".join(self._utt)
        n = len(self._utt)
        self._utt = []
        return MaxLengthReached(pcm, n * self._frame_ms, self._onset * self._frame_ms)
