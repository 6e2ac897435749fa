"""A ``record`` step, performed: beep, collect the caller's frames, end, store a WAV with the call.

The message ends at the first of: ``end_silence_ms`` of silence after speech (the endpointer, counting
frames), the end key (``#``), ``max_ms`` on the loop's clock, ``no_input_timeout_ms`` without any speech,
or a hangup (the message left so far is kept: callers often hang up to finish a voicemail). Trailing
silence is trimmed. The WAV is written in a worker thread, never on the event loop; a ``sensitive``
recording is measured and dropped, never written.

The runtime's hook is small: while a :class:`Recorder` is active it gets every caller frame
(:meth:`Recorder.feed`) and key (:meth:`Recorder.key`); its :meth:`Recorder.run` answers the engine's
``Record`` action with ``RecordingFinished``/``RecordingFailed``, and :meth:`Recorder.stop` finishes it
at hangup.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from ivr.flow import actions as act
from ivr.flow import events as ev
from ivr.media.endpoint import Endpointer, ListenSettings, MaxLengthReached, SpeechEnded, SpeechStarted
from ivr.media.framing import FRAME_MS
from ivr.media.wav import write_wav
from ivr.transport import PcmSource, PlayoutResult, PlayoutState

log = logging.getLogger(__name__)

BEEP_HZ = 1000
BEEP_MS = 250
KEEP_AFTER_SPEECH_MS = 300
"""Silence kept after the last speech when trailing silence is trimmed."""


def beep(rate: int, ms: int = BEEP_MS, hz: int = BEEP_HZ) -> bytes:
    """The tone before a recording: a sine at -12 dBFS with 10 ms fades (no clicks)."""
    n = rate * ms // 1000
    t = np.arange(n) / rate
    tone = 0.25 * np.sin(2 * np.pi * hz * t)
    fade = min(n // 2, rate // 100)
    ramp = np.linspace(0.0, 1.0, fade)
    tone[:fade] *= ramp
    tone[n - fade :] *= ramp[::-1]
    return bytes((tone * 32767).astype("<i2").tobytes())


class _Beep(Protocol):
    async def wait(self) -> PlayoutResult: ...


class RecordingMedia(Protocol):
    """What a recorder needs of the call's media (an :class:`ivr.transport.MediaTransport` has it)."""

    @property
    def rate(self) -> int: ...

    def play(self, source: PcmSource) -> _Beep: ...


@dataclass(frozen=True, slots=True)
class RecordingInfo:
    """What the call record keeps about one message."""

    step: str
    duration_s: float
    ended_by: str
    path: str | None
    sensitive: bool = False


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:120] or "recording"


class Recorder:
    """One message being recorded. Feed it frames and keys; ``run()`` ends with the engine's event."""

    def __init__(
        self,
        action: act.Record,
        *,
        media: RecordingMedia,
        directory: Path | None,
        call_id: str,
        index: int = 1,
        on_start: Callable[[], None] | None = None,
    ) -> None:
        self.on_start = on_start
        """Called when recording proper starts (after the beep)."""
        self.action = action
        self.media = media
        self.rate = media.rate
        self.directory = directory
        self.call_id = call_id
        self.index = index
        self.info: RecordingInfo | None = None
        self._frames: list[bytes] = []
        self._recording = False
        self._heard_speech = False
        self._speech_end_frame: int | None = None
        self._ended_by: str | None = None
        self._done = asyncio.Event()
        self._endpointer = Endpointer(self.rate)

    @property
    def active(self) -> bool:
        return not self._done.is_set()

    # -- fed by the runtime ------------------------------------------------------------------

    def feed(self, frame: bytes) -> None:
        """One caller frame (20 ms at the call rate)."""
        if not self._recording or self._done.is_set():
            return
        self._frames.append(frame)
        result = self._endpointer.feed(frame)
        if type(result) is SpeechStarted:
            self._heard_speech = True
            self._speech_end_frame = None
        elif type(result) is SpeechEnded:
            self._heard_speech = True
            self._speech_end_frame = len(self._frames)
            self._end("silence")
        elif type(result) is MaxLengthReached:
            self._end("max_length")

    def key(self, digit: str) -> bool:
        """A key while recording; True when it ended the message."""
        if self.action.end_key is not None and digit == self.action.end_key and not self._done.is_set():
            self._end("key")
            return True
        return False

    def stop(self, reason: str = "hangup") -> None:
        """The call is ending: keep what was said so far."""
        self._end(reason)

    def _end(self, reason: str) -> None:
        if not self._done.is_set():
            self._ended_by = reason
            self._done.set()

    # -- the recording ---------------------------------------------------------------------------

    async def run(self) -> ev.RecordingFinished | ev.RecordingFailed:
        """Beep, record until an end, store; the event answers the engine's ``Record``. However it ends
        (a failed beep, no directory, cancelled), the recorder is no longer :attr:`active` afterwards:
        the caller's frames go back to listening."""
        try:
            return await self._run()
        finally:
            self._done.set()

    async def _run(self) -> ev.RecordingFinished | ev.RecordingFailed:
        action = self.action
        if self.directory is None and not action.sensitive:
            return ev.RecordingFailed("no recordings directory is configured (IVR_RECORDINGS_DIR)")
        if action.beep and not self._done.is_set():
            playback = self.media.play(beep(self.rate))
            result = await playback.wait()
            if result.state is PlayoutState.FAILED:
                return ev.RecordingFailed(f"beep failed: {result.error}")
        self._endpointer.listen(
            ListenSettings(
                trailing_silence_ms=action.end_silence_ms,
                max_utterance_ms=action.max_ms,
                no_input_ms=None,
                postroll_ms=KEEP_AFTER_SPEECH_MS,
            )
        )
        self._recording = True
        if self.on_start is not None:
            self.on_start()
        loop = asyncio.get_running_loop()
        no_input = loop.call_later(action.no_input_timeout_ms / 1000, self._no_input)
        try:
            async with asyncio.timeout(action.max_ms / 1000):
                await self._done.wait()
        except TimeoutError:
            self._end("max_length")
        finally:
            no_input.cancel()
            self._recording = False
        return await self._store()

    def _no_input(self) -> None:
        if not self._heard_speech:
            self._end("no_input")

    def _pcm(self) -> bytes:
        frames = self._frames
        if self._ended_by == "no_input":
            return b""
        if self._speech_end_frame is not None:
            # The endpointer ended after end_silence_ms of silence: drop it, keep a little.
            trailing = max(0, (self.action.end_silence_ms - KEEP_AFTER_SPEECH_MS) // FRAME_MS)
            frames = frames[: max(0, self._speech_end_frame - trailing)]
        return b"".join(frames)

    async def _store(self) -> ev.RecordingFinished | ev.RecordingFailed:
        pcm = self._pcm()
        duration_ms = len(pcm) * 1000 // (2 * self.rate)
        ended_by = self._ended_by or "max_length"
        path: Path | None = None
        if pcm and not self.action.sensitive and self.directory is not None:
            name = safe_name(f"{self.call_id}-{self.action.name or self.action.step}-{self.index}") + ".wav"
            path = self.directory / name
            try:
                await asyncio.to_thread(_write, path, pcm, self.rate)
            except OSError as exc:
                log.warning("call %s: recording not stored at %s: %s", self.call_id, path, exc)
                self.info = RecordingInfo(self.action.step, duration_ms / 1000, ended_by, None)
                return ev.RecordingFailed(f"cannot store the recording: {exc.strerror or exc}")
        self.info = RecordingInfo(
            self.action.step,
            round(duration_ms / 1000, 3),
            ended_by,
            str(path) if path is not None else None,
            self.action.sensitive,
        )
        reason: ev.RecordingEndReason = "hangup"
        for known in ev.RECORDING_END_REASONS:
            if known == ended_by:
                reason = known  # type: ignore[assignment]
        return ev.RecordingFinished(duration_ms, reason, self.info.path)


def _write(path: Path, pcm: bytes, rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    write_wav(tmp, pcm, rate)
    tmp.replace(path)


async def finish(recorder: Recorder | None, task: asyncio.Task[object] | None) -> None:
    """At hangup: end an active recording and let it store what was said (bounded)."""
    if recorder is None or task is None:
        return
    recorder.stop("hangup")
    with contextlib.suppress(Exception, asyncio.CancelledError):
        async with asyncio.timeout(10):
            await asyncio.shield(task)
