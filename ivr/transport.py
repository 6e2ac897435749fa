"""The contract every media transport meets, so everything above it is shared by all of them.

A transport carries one call's audio both ways: AudioSocket (we pace: "written" is "played") and
Asterisk's WebSocket media (Asterisk paces from its own queue and tells us when a mark is played).
Above this line nobody knows which one runs: the call runtime reads :data:`InboundEvent` values and
plays :data:`PcmSource` audio through :meth:`MediaTransport.play`, getting a :class:`Playout` whose
``wait()`` ends when the caller has *heard* the prompt's end (or it was cleared, or failed).

Shaped after LiveKit agents' ``AudioOutput`` (capture, segment end, clear, playout reported by the
sink) and pipecat's one-serializer-per-wire; the names here are ours.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Protocol

PcmSource = bytes | bytearray | memoryview | AsyncIterable[bytes]
"""Signed 16-bit little-endian mono PCM at the transport's rate: all at once, or chunks of any size."""


@dataclass(frozen=True, slots=True)
class AudioIn:
    """Caller audio at ``rate`` Hz (normally one 20 ms frame)."""

    rate: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class DigitIn:
    """A DTMF key the transport itself carried (AudioSocket 0x03, WebSocket DTMF_END)."""

    digit: str


@dataclass(frozen=True, slots=True)
class PeerHangup:
    """The far end said it hangs up (it may still close the connection afterwards)."""

    reason: str = "peer hangup"


@dataclass(frozen=True, slots=True)
class MediaClosed:
    """The media connection is gone; always the last event. ``reason`` is for logs."""

    reason: str


InboundEvent = AudioIn | DigitIn | PeerHangup | MediaClosed


class PlayoutState(enum.Enum):
    QUEUED = "queued"
    PLAYING = "playing"
    COMPLETED = "completed"
    """The caller heard the last sample (AudioSocket: written on the clock; WebSocket: mark played)."""
    CLEARED = "cleared"
    """Stopped before its end (barge-in, a new step)."""
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class PlayoutResult:
    state: PlayoutState
    frames: int
    """20 ms frames of this prompt that reached the caller (or Asterisk's queue, for WebSocket media)."""
    underruns: int = 0
    """Frames where a started stream had nothing ready (silence kept the cadence)."""
    error: BaseException | None = None

    @property
    def completed(self) -> bool:
        return self.state is PlayoutState.COMPLETED


class Playout(Protocol):
    """One prompt handed to a transport."""

    @property
    def done(self) -> bool: ...

    @property
    def first_frame_at(self) -> float | None:
        """Loop time the first frame of this prompt was sent (response latency is measured to it)."""

    async def wait(self) -> PlayoutResult: ...


class MediaTransport(Protocol):
    """One call's media connection, whatever the wire."""

    @property
    def rate(self) -> int: ...

    @property
    def closed(self) -> bool: ...

    def events(self) -> AsyncIterator[InboundEvent]: ...

    def play(self, source: PcmSource) -> Playout:
        """Queue a prompt after whatever is queued; never raises on a closed transport (the returned
        playout fails instead), because a caller may hang up at any moment."""

    def clear(self) -> int:
        """Drop everything queued or playing now (barge-in); returns how many prompts were cleared."""

    def hangup(self, reason: str = ...) -> None: ...
