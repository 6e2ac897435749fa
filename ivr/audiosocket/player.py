"""Paced playback: one 20 ms frame per clock tick, audio when a prompt plays, silence otherwise.

A :class:`Player` belongs to one session and is a member of the server's shared
:class:`~ivr.audiosocket.clock.FrameClock`. It never sleeps: the clock calls :meth:`Player.tick` at
each of the session's deadlines and the player writes exactly one frame. Frames are cut lazily from
the source as they are due, so a long prompt costs nothing up front; a streaming source (a TTS
response) is read by a producer task owned by its :class:`Playback`, buffered a little ahead and
padded with silence when it ends mid-frame. Silence between prompts keeps Asterisk's ``AudioSocket()``
inactivity timer fed and avoids the "peer waits for audio first" silent-call problem.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterable, Awaitable, Callable

from ivr.audiosocket.clock import Clock
from ivr.audiosocket.protocol import audio_header, frame_bytes
from ivr.audiosocket.stats import LatencyHistogram
from ivr.transport import PcmSource, PlayedTap, PlayoutResult, PlayoutState

log = logging.getLogger(__name__)


class PlayoutRecord:
    """What every AudioSocket prompt keeps about itself, whoever paces it (the loop's :class:`Player` or
    the native thread's ``NativePlayer``): its state, counters, first frame and the future ``wait()`` gives."""

    __slots__ = ("_done", "_error", "_producer", "first_frame_at", "frames", "state", "underruns")

    def __init__(self) -> None:
        self._done: asyncio.Future[PlayoutResult] = asyncio.get_running_loop().create_future()
        self.state = PlayoutState.QUEUED
        self.frames = 0
        self.underruns = 0
        self.first_frame_at: float | None = None
        """Clock deadline of this prompt's first frame (for response-latency measurement)."""
        self._error: BaseException | None = None
        self._producer: asyncio.Task[None] | None = None

    @property
    def done(self) -> bool:
        return self._done.done()

    async def wait(self) -> PlayoutResult:
        """Wait until the prompt has been fully written, stopped or has failed."""
        return await asyncio.shield(self._done)

    async def _read(self, source: AsyncIterable[bytes], put: Callable[[bytes], Awaitable[bool]]) -> None:
        """A stream's chunks into ``put`` (False: stop reading) until it ends, the prompt is over or the
        stream breaks: then what was read still plays, and the error is reported with the result."""
        try:
            async for chunk in source:
                if self._done.done():
                    return
                if not chunk:
                    continue
                if type(chunk) is not bytes:
                    chunk = bytes(chunk)  # a mutable buffer may be reused by the stream: copy it once
                if not await put(chunk):
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the source (a TTS stream) broke: play what we have, then report it
            self._error = exc


class Playback(PlayoutRecord):
    """One prompt queued on a player (an :class:`ivr.transport.Playout`): "written on the clock" is
    "played", since Asterisk forwards AudioSocket frames at once. ``stop()`` acts before the next frame.

    Audio is never copied into the playback: a ``bytes`` source (a prompt the cache holds in memory,
    shared by every call that plays it) and each chunk a stream yields are kept by reference and framed
    lazily by offset, so a call playing a 5 s prompt holds no copy of it; only the 20 ms frame on its
    way to the socket is made.
    """

    __slots__ = (
        "_chunks",
        "_ended",
        "_frame_size",
        "_header",
        "_max_ahead",
        "_off",
        "_prebuffer",
        "_queued",
        "_space",
        "_started",
    )

    def __init__(
        self,
        source: PcmSource,
        *,
        frame_size: int,
        header: bytes,
        prebuffer: int,
        max_ahead: int,
    ) -> None:
        super().__init__()
        loop = asyncio.get_running_loop()
        self._frame_size = frame_size
        self._header = header
        self._prebuffer = prebuffer
        self._max_ahead = max_ahead
        self._chunks: deque[bytes] = deque()
        """Audio not yet written, by reference: the first chunk from ``_off`` on, then the others whole."""
        self._off = 0
        self._queued = 0
        """Bytes in ``_chunks`` not yet written."""
        self._ended = False
        self._started = False
        self._space: asyncio.Event | None = None
        if isinstance(source, bytes | bytearray | memoryview):
            # bytes are kept as they are (shared); a mutable buffer is copied once, as the caller may reuse it
            data = source if isinstance(source, bytes) else bytes(source)
            if data:
                self._chunks.append(data)
                self._queued = len(data)
            self._ended = self._started = True
        else:
            self._space = asyncio.Event()
            self._space.set()
            self._producer = loop.create_task(self._produce(source), name="ivr-playback-producer")

    @property
    def source(self) -> bytes | None:
        """The audio this prompt is playing from now (the very object it was given, for a ``bytes``
        source), or None once nothing is queued."""
        return self._chunks[0] if self._chunks else None

    def stop(self) -> None:
        """Stop now (barge-in): no further frame of this prompt is written."""
        self._finish(PlayoutState.CLEARED)

    def next_frame(self) -> bytes | None:
        """The next frame (header included), or None when nothing is ready or the prompt is over."""
        if self._done.done():
            return None
        if not self._started:
            if self._queued < self._prebuffer and not self._ended:
                return None
            self._started = True
        self.state = PlayoutState.PLAYING
        size = self._frame_size
        if self._queued >= size:
            frame = self._take(size)
        elif self._ended:
            if not self._queued:
                self._finish(PlayoutState.FAILED if self._error else PlayoutState.COMPLETED)
                return None
            frame = self._take(self._queued)
            frame += bytes(size - (len(frame) - len(self._header)))  # the last frame padded with silence
        else:
            self.underruns += 1
            return None
        space = self._space
        if space is not None and not space.is_set() and self._queued < self._max_ahead // 2:
            space.set()
        self.frames += 1
        return frame

    def _take(self, n: int) -> bytes:
        """Header plus the next ``n`` queued bytes (one new object: the frame the wire needs)."""
        chunks = self._chunks
        head = chunks[0]
        off = self._off
        end = off + n
        self._queued -= n
        if end < len(head):
            self._off = end
            return self._header + head[off:end]
        if end == len(head):
            chunks.popleft()
            self._off = 0
            return self._header + head[off:end]
        # the frame spans chunks (a stream's chunks need not be frame-sized)
        parts = [self._header, head[off:]]
        chunks.popleft()
        need = end - len(head)
        while need:
            head = chunks[0]
            if need < len(head):
                parts.append(head[:need])
                self._off = need
                break
            parts.append(head)
            chunks.popleft()
            need -= len(head)
            self._off = 0
        return b"".join(parts)

    async def _produce(self, source: AsyncIterable[bytes]) -> None:
        try:
            await self._read(source, self._put)
        finally:
            self._ended = True
            if self._done.done():
                await _aclose(source)

    async def _put(self, chunk: bytes) -> bool:
        space = self._space
        assert space is not None
        self._chunks.append(chunk)  # bytes by reference: immutable, maybe shared with other calls
        self._queued += len(chunk)
        if self._queued >= self._max_ahead:
            space.clear()
            await space.wait()
        return True

    def _finish(self, state: PlayoutState) -> None:
        if self._done.done():
            return
        self.state = state
        self._done.set_result(PlayoutResult(state, self.frames, self.underruns, self._error))
        self._chunks.clear()
        self._queued = self._off = 0
        producer = self._producer
        if producer is not None and not producer.done() and producer is not _current_task():
            producer.cancel()


def _current_task() -> asyncio.Task[object] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


async def _aclose(source: AsyncIterable[bytes]) -> None:
    aclose = getattr(source, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:  # closing a broken stream must not mask why it ended
            log.debug("error while closing a playback source", exc_info=True)


class Player:
    """Paced output of one session; a member of the shared frame clock.

    ``write`` receives complete AudioSocket messages (header + 20 ms of audio). The player is created
    with the session's rate and switches only through :meth:`set_rate` (accept mode learns the rate
    from the first audio message).
    """

    def __init__(
        self,
        write: Callable[[bytes], None],
        rate: int,
        clock: Clock,
        *,
        prebuffer_ms: int = 60,
        max_ahead_ms: int = 5000,
    ) -> None:
        self._write = write
        self._clock = clock
        self.prebuffer_ms = prebuffer_ms
        self.max_ahead_ms = max_ahead_ms
        self._queue: deque[Playback] = deque()
        self.lateness = LatencyHistogram()
        """Per-frame lateness of this session's writes against their deadlines."""
        self.frames_sent = 0
        self.audio_frames = 0
        self.first_deadline: float | None = None
        self.last_deadline: float | None = None
        self.paused = False
        self.dropped_frames = 0
        """Frames not written because the peer stopped reading (transport write buffer full)."""
        self.held = False
        """The current prompt is held (a backchannel over it): silence goes out, the prompt keeps its place."""
        self.tap: PlayedTap | None = None
        """Told each frame written (``None`` for silence) with its deadline: the echo check's reference."""
        self.set_rate(rate)

    def set_rate(self, rate: int) -> None:
        self.rate = rate
        self.frame_size = frame_bytes(rate)
        self._header = audio_header(rate, self.frame_size)
        self._silence = self._header + bytes(self.frame_size)

    @property
    def is_playing(self) -> bool:
        return any(not p.done for p in self._queue)

    def play(self, source: PcmSource, *, prebuffer_ms: int | None = None) -> Playback:
        """Queue PCM at the session rate; it starts after what is already queued."""
        pre = self.prebuffer_ms if prebuffer_ms is None else prebuffer_ms
        playback = Playback(
            source,
            frame_size=self.frame_size,
            header=self._header,
            prebuffer=max(self.frame_size, frame_bytes(self.rate, pre)),
            max_ahead=max(2 * self.frame_size, frame_bytes(self.rate, self.max_ahead_ms)),
        )
        self._queue.append(playback)
        return playback

    def hold(self) -> bool:
        """Send silence instead of the current prompt from the next frame on, keeping its place; False
        when nothing is queued or playing."""
        if not self.is_playing:
            return False
        self.held = True
        return True

    def release(self) -> None:
        """Play on after :meth:`hold`, from the frame where it stopped."""
        self.held = False

    def stop_all(self) -> int:
        """Barge-in: stop the current and all queued prompts before the next frame."""
        self.held = False
        stopped = 0
        while self._queue:
            playback = self._queue.popleft()
            if not playback.done:
                playback.stop()
                stopped += 1
        return stopped

    def tick(self, deadline: float) -> None:
        self.lateness.record(self._clock.now() - deadline)
        if self.first_deadline is None:
            self.first_deadline = deadline
        self.last_deadline = deadline
        frame = None
        queue = self._queue
        while queue and not self.held:
            current = queue[0]
            frame = current.next_frame()
            if frame is not None:
                if current.first_frame_at is None:
                    current.first_frame_at = deadline
                break
            if not current.done:
                break
            queue.popleft()
        if self.paused:
            self.dropped_frames += 1
            return
        tap = self.tap
        if frame is None:
            frame = self._silence
            if tap is not None:
                tap.played(None, deadline)
        else:
            self.audio_frames += 1
            if tap is not None:
                tap.played(memoryview(frame)[len(self._header) :], deadline)
        self.frames_sent += 1
        self._write(frame)
