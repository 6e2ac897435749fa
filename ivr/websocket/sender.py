"""The sending half of a WebSocket media session: prompts go ahead within Asterisk's flow control.

One task per session (never one per frame) writes whole prompts ahead in messages of several frames:

* **XOFF/XON.** Sending stops on MEDIA_XOFF and resumes on MEDIA_XON, and, independently, never more
  than ``max_ahead`` frames are unconfirmed: Asterisk drops a whole message that arrives while 1,000
  frames are queued, and XOFF may still be on its way. So nothing is ever dropped.
* **Marks as receipts.** A MARK_MEDIA goes before each prompt's first frame (or the mark already there
  is reused), after its last one and every ``credit_every`` frames. Asterisk answers a mark when its
  timer reaches it, i.e. once every frame before it has been played: that starts a prompt
  (``first_frame_at``), completes it (the caller heard the end) and confirms frames for the window.
* **Barge-in.** :meth:`Sender.clear` settles every live prompt at once and FLUSH_MEDIA goes out before
  any later frame; Asterisk drops its whole queue, marks included, so confirmations restart from there.
* **Pause.** :meth:`Sender.pause` sends PAUSE_MEDIA: Asterisk stops dequeuing (it plays silence) and keeps
  its queue, so :meth:`Sender.resume` (CONTINUE_MEDIA) plays on from the very frame where it stopped.
* **What the caller hears.** A :class:`~ivr.transport.PlayedTap` is told each frame as it is sent, with the
  time Asterisk's queue will reach it (one frame per ``frame_s`` after the previous one, from now when the
  queue had run dry), told when a flush drops them, and shifted by a pause.
* **Old Asterisks.** MARK_MEDIA arrived in 22.8.0: a probe mark goes out before any audio (and again
  after a flush that may have dropped it); ``on_marks_missing`` runs if none is answered in time.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ivr.transport import PcmSource, PlayedTap, PlayoutState
from ivr.websocket.playout import WebSocketPlayout
from ivr.websocket.protocol import Command, ControlForm, encode_command


class MediaSocket(Protocol):
    """What a session needs of an aiohttp WebSocket (client or server side)."""

    async def send_bytes(self, data: bytes, compress: int | None = None) -> None: ...

    async def send_str(self, data: str, compress: int | None = None) -> None: ...

    async def receive(self, timeout: float | None = None) -> Any: ...

    async def close(self, *, code: int = ..., message: bytes = ...) -> bool: ...


@dataclass(slots=True)
class SessionStats:
    frames_sent: int = 0
    messages_sent: int = 0
    frames_received: int = 0
    marks_sent: int = 0
    marks_answered: int = 0
    xoff: int = 0
    flushes: int = 0
    max_unconfirmed: int = 0
    asterisk_errors: int = 0


class _Mark:
    __slots__ = ("ends", "sent", "seq", "starts")

    def __init__(self, seq: int, sent: int) -> None:
        self.seq = seq
        self.sent = sent
        """Frames sent before this mark: all of them have been played once it is answered."""
        self.starts: list[WebSocketPlayout] = []
        self.ends: WebSocketPlayout | None = None


class Sender:
    """Owns the outbound state; :meth:`run` is the session's one sending task."""

    def __init__(
        self,
        ws: MediaSocket,
        *,
        form: ControlForm,
        frame_size: int,
        per_message: int,
        max_ahead: int,
        credit_every: int,
        mark_timeout: float,
        stream_buffer: int,
        stats: SessionStats,
        on_marks_missing: Callable[[], None],
        frame_s: float = 0.02,
    ) -> None:
        self._ws = ws
        self._form = form
        self._frame_size = frame_size
        self._per_message = per_message
        self._max_ahead = max_ahead
        self._credit_every = credit_every
        self._mark_timeout = mark_timeout
        self._stream_buffer = stream_buffer
        self._stats = stats
        self._on_marks_missing = on_marks_missing
        self._loop = asyncio.get_running_loop()
        self.wake = asyncio.Event()
        self._queue: deque[WebSocketPlayout] = deque()
        self._live: set[WebSocketPlayout] = set()
        self._marks: deque[_Mark] = deque()
        self._texts: deque[str] = deque()
        self._seq = 0
        self._sent = 0
        self._confirmed = 0
        self._since_mark = 0
        self._xoff = False
        self._flush_pending = False
        self._closed = False
        self.marks_seen = False
        self._watchdog: asyncio.TimerHandle | None = None
        self._frame_s = frame_s
        self.tap: PlayedTap | None = None
        self._play_clock = 0.0
        """Loop time Asterisk's queue reaches the next frame sent (as if never paused)."""
        self._paused_at: float | None = None
        self._continue_after_flush = False

    # -- called by the session --------------------------------------------------------------------

    def play(self, source: PcmSource) -> WebSocketPlayout:
        playout = WebSocketPlayout(
            source, frame_size=self._frame_size, wake=self.wake.set, max_buffer=self._stream_buffer
        )
        self._queue.append(playout)
        self._live.add(playout)
        self.wake.set()
        return playout

    def clear(self) -> int:
        cleared = sum(1 for playout in self._live if playout.finish(PlayoutState.CLEARED))
        self._live.clear()
        self._queue.clear()
        paused = self._paused_at is not None
        if (cleared or paused) and not self._closed:
            self._flush_pending = True
            self._stats.flushes += 1
            self._continue_after_flush = paused  # a later prompt must not wait in a paused queue
            self._paused_at = None
            self.wake.set()
        return cleared

    @property
    def paused(self) -> bool:
        return self._paused_at is not None

    def pause(self) -> bool:
        """PAUSE_MEDIA before any further audio; False when nothing plays (or already paused)."""
        if self._closed or self._paused_at is not None or not any(not p.done for p in self._live):
            return False
        self._paused_at = now = self._loop.time()
        self.queue_text(self.command("PAUSE_MEDIA"))
        if self.tap is not None:
            self.tap.held(now)
        return True

    def resume(self) -> None:
        """CONTINUE_MEDIA: Asterisk plays on from the frame where it stopped."""
        paused_at, self._paused_at = self._paused_at, None
        if paused_at is None or self._closed:
            return
        now = self._loop.time()
        if self._play_clock > paused_at:
            self._play_clock += now - paused_at
        self.queue_text(self.command("CONTINUE_MEDIA"))
        if self.tap is not None:
            self.tap.released(now)

    def command(self, verb: str, argument: str | None = None) -> str:
        return encode_command(Command(verb, argument), self._form)

    def queue_text(self, text: str) -> None:
        """A control message to send before any further audio (GET_STATUS)."""
        self._texts.append(text)
        self.wake.set()

    def on_xoff(self) -> None:
        self._xoff = True
        self._stats.xoff += 1

    def on_xon(self) -> None:
        self._xoff = False
        self.wake.set()

    def on_mark(self, correlation_id: str) -> str | None:
        """Asterisk played up to a mark; returns a complaint for the log if the mark is not ours."""
        marks = self._marks
        try:
            seq = int(correlation_id)
        except ValueError:
            return f"MEDIA_MARK_PROCESSED {correlation_id[:40]!r} is not one of ours"
        if not marks or seq < marks[0].seq:
            return None  # its mark was flushed (or answered) already
        if seq > marks[-1].seq:
            return f"MEDIA_MARK_PROCESSED {seq} was never sent"
        if not self.marks_seen:
            self.marks_seen = True
            if self._watchdog is not None:
                self._watchdog.cancel()
        now = self._loop.time()
        while marks:
            mark = marks.popleft()
            self._stats.marks_answered += 1
            if mark.sent > self._confirmed:
                self._confirmed = mark.sent
            for playout in mark.starts:
                playout.started(now)
            ended = mark.ends
            if ended is not None and ended.finish(PlayoutState.COMPLETED):
                self._live.discard(ended)
            if mark.seq == seq:
                break
        self.wake.set()
        return None

    def close(self) -> None:
        """The connection is over: every live prompt is cleared, the sending task ends."""
        self._closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        for playout in self._live:
            playout.finish(PlayoutState.CLEARED)
        self._live.clear()
        self._queue.clear()
        self.wake.set()

    # -- the sending task ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Send until :meth:`close`; a failed write raises (the session closes on it)."""
        wake = self.wake
        queue = self._queue
        await self._send_mark(probe=True)
        while not self._closed:
            wake.clear()
            if self._texts:
                await self._ws.send_str(self._texts.popleft())
                continue
            if self._flush_pending:
                await self._flush()
                continue
            while queue and queue[0].done:
                queue.popleft()
            if not queue:
                await wake.wait()
                continue
            playout = queue[0]
            if not playout.announced:
                playout.announced = True
                await self._announce(playout)
                continue
            room = self._max_ahead - (self._sent - self._confirmed)
            if self._xoff or room < 1:
                await wake.wait()
                continue
            chunk, frames = playout.take(min(self._per_message, room))
            if frames:
                await self._send_audio(chunk, frames, playout)
            elif playout.exhausted:
                queue.popleft()
                await self._send_mark(ends=playout)
            else:
                await wake.wait()  # a streaming source has no whole frame yet

    async def _send_audio(self, chunk: bytes | memoryview, frames: int, playout: WebSocketPlayout) -> None:
        self._sent += frames
        self._since_mark += frames
        playout.frames += frames
        stats = self._stats
        stats.frames_sent += frames
        stats.messages_sent += 1
        unconfirmed = self._sent - self._confirmed
        if unconfirmed > stats.max_unconfirmed:
            stats.max_unconfirmed = unconfirmed
        tap = self.tap
        if tap is not None:
            self._tell(tap, chunk, frames)
        # aiohttp writes any bytes-like object; a memoryview slice of the prompt saves a copy.
        await self._ws.send_bytes(chunk)  # type: ignore[arg-type]
        if self._since_mark >= self._credit_every:
            await self._send_mark()

    def _tell(self, tap: PlayedTap, chunk: bytes | memoryview, frames: int) -> None:
        period = self._frame_s
        at = max(self._loop.time(), self._play_clock)
        size = self._frame_size
        view = memoryview(chunk)
        for i in range(frames):
            tap.played(view[i * size : (i + 1) * size], at + i * period)
        self._play_clock = at + frames * period

    async def _announce(self, playout: WebSocketPlayout) -> None:
        """Place the mark that starts ``playout``: the last mark if nothing was sent after it."""
        if self._marks and self._since_mark == 0:
            self._marks[-1].starts.append(playout)
        else:
            await self._send_mark(starts=playout)

    async def _send_mark(
        self,
        *,
        starts: WebSocketPlayout | None = None,
        ends: WebSocketPlayout | None = None,
        probe: bool = False,
    ) -> None:
        mark = _Mark(self._seq, self._sent)
        self._seq += 1
        if starts is not None:
            mark.starts.append(starts)
        mark.ends = ends
        self._marks.append(mark)
        self._since_mark = 0
        self._stats.marks_sent += 1
        if probe:
            if self._watchdog is not None:
                self._watchdog.cancel()
            self._watchdog = self._loop.call_later(self._mark_timeout, self._check_marks)
        await self._ws.send_str(self.command("MARK_MEDIA", str(mark.seq)))

    async def _flush(self) -> None:
        self._flush_pending = False
        await self._ws.send_str(self.command("FLUSH_MEDIA"))
        if self._continue_after_flush:
            self._continue_after_flush = False
            await self._ws.send_str(self.command("CONTINUE_MEDIA"))
        # Asterisk drops everything queued before the flush, pending marks included.
        self._marks.clear()
        self._confirmed = self._sent
        self._since_mark = 0
        self._xoff = False
        now = self._loop.time()
        self._play_clock = now
        if self.tap is not None:
            self.tap.flushed(now)
        if not self.marks_seen:
            await self._send_mark(probe=True)  # the probe may have gone with the flush

    def _check_marks(self) -> None:
        if not self.marks_seen and not self._closed:
            self._on_marks_missing()
