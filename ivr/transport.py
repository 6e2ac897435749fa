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

import asyncio
import enum
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Final, Protocol

PcmSource = bytes | bytearray | memoryview | AsyncIterable[bytes]
"""Signed 16-bit little-endian mono PCM at the transport's rate: all at once, or chunks of any size."""

SLIN_FORMAT_RATES: Final[Mapping[str, int]] = {
    "slin": 8000,
    "slin12": 12000,
    "slin16": 16000,
    "slin24": 24000,
    "slin32": 32000,
    "slin44": 44100,
    "slin48": 48000,
    "slin96": 96000,
    "slin192": 192000,
}
"""Asterisk's linear-PCM format names (``externalMedia format=``, ``c(...)``) and their sample rates:
the only formats a transport hands upwards, whatever its wire."""


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
    """The far end said it hangs up (it may still close the connection afterwards).

    AudioSocket: a hangup message. WebSocket media: Asterisk's close frame (chan_websocket closes the
    socket when its channel hangs up and sends no text for it); a connection that just drops gives
    only :class:`MediaClosed`."""

    reason: str = "peer hangup"


@dataclass(frozen=True, slots=True)
class MediaClosed:
    """The media connection is gone; always the last event. ``reason`` is for logs."""

    reason: str


InboundEvent = AudioIn | DigitIn | PeerHangup | MediaClosed


AudioSink = Callable[[bytes], None]
"""Receives each caller audio payload synchronously, straight from the socket callback: the per-frame path
wakes no task and allocates no event (control events still come through ``events()``)."""


MeasuredSink = Callable[[bytes, float], None]
"""Receives a caller audio payload of exactly 20 ms with its level in dBFS (DC removed, as
``ivr.media.vad.EnergyVad`` measures it), where the transport measured it already (AudioSocket's native
reading thread measures every frame off the loop's thread)."""


def discard_audio(payload: bytes) -> None:
    """The sink for caller audio once the call's runtime has ended but the media is still open (its
    teardown under way): nobody will listen, so it is let go on purpose; queued instead, it would pile up
    and count as a slow consumer's loss (``dropped_audio``) when no consumer is slow."""


class PlayedTap(Protocol):
    """Told what the caller hears from us, frame by frame: the reference an echo check compares the caller's
    line with (carriers cancel no echo, so our prompt comes back on it).

    ``played(frame, at)``: one 20 ms frame (``None``: a frame of silence) starts playing at loop time ``at``.
    AudioSocket tells each frame as it is written on the clock (``at`` is its deadline); WebSocket media
    tells frames as they are handed to Asterisk, with the time Asterisk's queue will reach them (frames
    arrive ahead, in bursts). ``flushed(at)``: frames told earlier that were due after ``at`` will not play
    (Asterisk's queue was flushed). ``held(at)`` / ``released(at)``: the queue stopped at ``held``'s time and
    goes on at ``released``'s, so frames due after the first now play that much later (WebSocket media's
    pause; AudioSocket only tells frames as they go out). All run on the transport's own path: keep them
    cheap and never raise.
    """

    def played(self, frame: bytes | memoryview | None, at: float) -> None: ...

    def played_db(self, level_db: float, at: float) -> None:
        """As :meth:`played`, with the frame's level (dBFS, DC removed; -100 for silence) measured by
        whoever wrote it: the native pacer measures each frame as it writes it, off the event loop."""

    def flushed(self, at: float) -> None: ...

    def held(self, at: float) -> None: ...

    def released(self, at: float) -> None: ...


class PlayoutState(enum.Enum):
    QUEUED = "queued"
    PLAYING = "playing"
    COMPLETED = "completed"
    """The caller heard the last sample (AudioSocket: written on the clock; WebSocket: mark played)."""
    CLEARED = "cleared"
    """Stopped before its end: barge-in, a new step, or the media connection closed under it."""
    FAILED = "failed"
    """The source broke, or the prompt was handed to a transport that was already closed."""


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
        """Loop time the caller started hearing this prompt (response latency is measured to it).

        AudioSocket: the clock deadline its first frame was written on. WebSocket media: when Asterisk
        reported the mark placed before its first frame, i.e. its queue reached the prompt; None if
        the prompt never started."""

    async def wait(self) -> PlayoutResult: ...


@dataclass(frozen=True, slots=True)
class MediaStats:
    """One call's media counters, read once when the call ends (never per frame) for the metrics.

    What a transport can count depends on who paces it: where the app paces (AudioSocket), ``lateness``
    is its histogram of how late each outbound frame was written; where Asterisk paces (WebSocket media)
    there is none (lateness is Asterisk's), and ``xoff`` says how often Asterisk's queue was full.
    """

    transport: str
    """``audiosocket`` or ``websocket``."""
    inbound_dropped: int = 0
    """Caller frames dropped because the consumer fell behind."""
    outbound_dropped: int = 0
    """Prompt frames that never went out (AudioSocket: a peer that stopped reading)."""
    lateness: object | None = None
    """The app's outbound frame lateness histogram, where the app paces (``LatencyHistogram``)."""
    xoff: int = 0
    """Times Asterisk said its queue was full (WebSocket media: sending paused, nothing dropped)."""
    preroll_discarded: int = 0
    """Caller frames from before the call listened, older than the pre-roll it keeps (not drops)."""


class MediaTransport(Protocol):
    """One call's media connection, whatever the wire."""

    @property
    def rate(self) -> int: ...

    @property
    def closed(self) -> bool: ...

    def events(self) -> AsyncIterator[InboundEvent]: ...

    def on_audio(self, sink: AudioSink | None) -> None:
        """Deliver caller audio to ``sink`` as it arrives instead of as :class:`AudioIn` events
        (``None``: back to events)."""

    def on_measured_audio(self, sink: MeasuredSink | None) -> None:
        """Deliver the 20 ms frames whose level the transport measured to ``sink`` instead, with it; the
        others still go to :meth:`on_audio`'s sink. A transport that measures nothing never calls it."""

    def play(self, source: PcmSource) -> Playout:
        """Queue a prompt after whatever is queued; never raises on a closed transport (the returned
        playout fails instead), because a caller may hang up at any moment."""

    def clear(self) -> int:
        """Drop everything queued or playing now (barge-in); returns how many prompts were cleared."""

    def pause(self) -> bool:
        """Hold the prompt that plays now (a backchannel over it): the caller hears silence, the prompt keeps
        its place and later ones stay queued. False when nothing plays. AudioSocket stops taking frames;
        WebSocket media flushes Asterisk's queue and rewinds to the last frame Asterisk confirmed with a
        mark, so a few frames (at most one mark interval) are heard again on :meth:`resume`."""

    def resume(self) -> None:
        """Play on after :meth:`pause` (nothing when not paused); :meth:`clear` also ends a pause."""

    def on_played(self, tap: PlayedTap | None) -> None:
        """Tell ``tap`` every frame sent to the caller from now on (``None``: stop)."""

    def hangup(self, reason: str = ...) -> None: ...

    def media_stats(self) -> MediaStats:
        """What this call's media counted so far (read once, when the call ends)."""


class InboundQueue:
    """The bounded queue between a transport's socket and whoever consumes its :data:`InboundEvent`.

    Audio is perishable: when the consumer falls behind, the oldest audio is dropped (and counted) so
    memory stays bounded and the consumer catches up with the present. Digits, hangups and the final
    :class:`MediaClosed` are never dropped, and nothing is accepted after :class:`MediaClosed`.

    Until a consumer first sets a :attr:`sink` the queue is the call's pre-roll: audio from before the
    call listens (the greeting has not started). Only the newest ``max_audio`` frames of it are kept, and
    what it lets go is counted apart (:attr:`preroll_discarded`), not as a slow consumer's drops.
    """

    __slots__ = (
        "_audio", "_closed", "_items", "_listened", "_sink", "_waiter",
        "dropped_audio", "max_audio", "measured", "preroll_discarded",
    )  # fmt: skip

    def __init__(self, max_audio: int) -> None:
        if max_audio < 1:
            raise ValueError("max_audio must be at least 1")
        self.max_audio = max_audio
        self._items: deque[InboundEvent] = deque()
        self._audio = 0
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self.dropped_audio = 0
        self.preroll_discarded = 0
        self._listened = False
        self._sink: AudioSink | None = None
        self.measured: MeasuredSink | None = None
        """Where :meth:`put_audio` hands audio whose level came with it (taken only while a sink is set)."""

    @property
    def sink(self) -> AudioSink | None:
        """When set, :meth:`put_audio` hands audio to it at once instead of queueing it."""
        return self._sink

    @sink.setter
    def sink(self, sink: AudioSink | None) -> None:
        self._sink = sink
        if sink is not None:
            self._listened = True

    @property
    def measured_route(self) -> MeasuredSink | None:
        """Where a measured frame goes at once right now (as :meth:`put_audio` would send it), or None
        while it would be queued, dropped or sent to the plain sink: a transport may hand such frames
        straight to it."""
        return self.measured if self._sink is not None and not self._closed else None

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    def put_audio(self, rate: int, payload: bytes, level: float | None = None) -> None:
        """Caller audio: to the sink if there is one (no allocation, no wake-up), else queued;
        ``level``: its dBFS when the transport measured it (then to :attr:`measured`, if set)."""
        if self._closed:
            return
        sink = self._sink
        if sink is not None:
            measured = self.measured
            if level is not None and measured is not None:
                measured(payload, level)
            else:
                sink(payload)
        else:
            self.put(AudioIn(rate, payload))

    def put(self, event: InboundEvent) -> None:
        if self._closed:
            return
        if type(event) is AudioIn:
            if self._audio >= self.max_audio:
                self._drop_oldest_audio()
            self._audio += 1
        elif type(event) is MediaClosed:
            self._closed = True
        self._items.append(event)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _drop_oldest_audio(self) -> None:
        items = self._items
        for i, item in enumerate(items):
            if type(item) is AudioIn:
                del items[i]
                self._audio -= 1
                if self._listened:
                    self.dropped_audio += 1
                else:
                    self.preroll_discarded += 1
                return

    async def get(self) -> InboundEvent | None:
        """The next event, or None once the final :class:`MediaClosed` has been taken."""
        while not self._items:
            if self._closed:
                return None
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            await waiter
        event = self._items.popleft()
        if type(event) is AudioIn:
            self._audio -= 1
        return event

    def get_nowait(self) -> InboundEvent | None:
        """The next queued event, or None when nothing is queued."""
        if not self._items:
            return None
        event = self._items.popleft()
        if type(event) is AudioIn:
            self._audio -= 1
        return event

    async def events(self) -> AsyncIterator[InboundEvent]:
        while (event := await self.get()) is not None:
            yield event


HANDLER_GRACE_S = 1.0
"""At a server's close, how long the handlers of the sessions it just closed get to end by themselves."""


async def end_handlers(tasks: set[asyncio.Task[None]], grace: float = HANDLER_GRACE_S) -> None:
    """A media server closes: its sessions are closed, so let their call handlers end on their own
    (bounded by ``grace``), then cancel the rest. A handler task cancelled before its first step would
    never run at all, and its call would have no record."""
    if tasks:
        await asyncio.wait(set(tasks), timeout=grace)
    for task in list(tasks):
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
