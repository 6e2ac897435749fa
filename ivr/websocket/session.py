"""One call's WebSocket media connection (chan_websocket): :class:`ivr.transport.MediaTransport`.

Asterisk paces this media itself: its 20 ms timer takes one frame from a queue the app fills ahead of
time. So the session has no frame clock and never sleeps per frame. One sender task per session writes
whole prompts ahead, in messages of several frames, as far as Asterisk's flow control allows:

* **XOFF/XON.** Sending stops on MEDIA_XOFF and resumes on MEDIA_XON, and, independently, never more
  than ``max_ahead_frames`` frames are unconfirmed: Asterisk drops a whole message that arrives while
  1,000 frames are queued, and XOFF may still be on its way. Nothing is ever dropped.
* **Marks as receipts.** A MARK_MEDIA goes before each prompt's first frame, after its last one and
  every ``credit_every`` frames. Asterisk answers a mark when its timer reaches it, i.e. when every
  frame before it has been played: that starts a prompt (``first_frame_at``), completes it (the caller
  heard the end, so a no-input timer starts at the right moment) and confirms frames for the window.
* **Barge-in.** ``clear()`` settles every live prompt as cleared at once and FLUSH_MEDIA goes out before
  any later frame; Asterisk drops its whole queue (audio and marks), so the caller is silent from its
  next 20 ms tick.
* **Old Asterisks.** MARK_MEDIA arrived in 22.8.0: the session probes with a mark before any audio and,
  if no answer comes within ``mark_timeout``, closes with a log line saying why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from aiohttp import WSMsgType

from ivr.transport import (
    SLIN_FORMAT_RATES,
    AudioIn,
    DigitIn,
    InboundEvent,
    InboundQueue,
    MediaClosed,
    PcmSource,
    PeerHangup,
    PlayoutState,
)
from ivr.websocket.playout import WebSocketPlayout
from ivr.websocket.protocol import (
    MAX_BINARY_PAYLOAD,
    QUEUE_MAX,
    Command,
    DtmfEnd,
    ErrorEvent,
    MediaMarkProcessed,
    MediaStart,
    MediaXoff,
    MediaXon,
    ProtocolError,
    Status,
    UnknownEvent,
    decode_event,
    encode_command,
)

log = logging.getLogger(__name__)

Shape = Literal["client", "server"]
"""``client``: the app connected to Asterisk's /media/<id>; ``server``: Asterisk connected to the app."""


class MediaSocket(Protocol):
    """What the session needs of an aiohttp WebSocket (client or server side)."""

    async def send_bytes(self, data: bytes, compress: int | None = None) -> None: ...

    async def send_str(self, data: str, compress: int | None = None) -> None: ...

    async def receive(self, timeout: float | None = None) -> Any: ...

    async def close(self, *, code: int = ..., message: bytes = ...) -> bool: ...


@dataclass(frozen=True, slots=True)
class SessionConfig:
    frames_per_message: int = 10
    """Frames per binary message (capped by Asterisk's 64 KiB read buffer): fewer messages, less CPU."""
    max_ahead_frames: int | None = None
    """Unconfirmed frames at most (None: as far as Asterisk's 1,000-frame queue allows)."""
    credit_every: int = 50
    """A MARK_MEDIA every this many frames, so prompts longer than the window keep flowing."""
    mark_timeout: float = 5.0
    """Seconds Asterisk has to answer the first mark (no answer: chan_websocket before 22.8)."""
    inbound_max_frames: int = 50
    """Caller audio frames queued for a slow consumer before the oldest are dropped (50 = 1 s)."""
    stream_buffer_ms: int = 2000
    """How far a streaming source is read ahead of what Asterisk has taken."""
    close_timeout: float = 2.0
    """Seconds a closing session waits for its sender before cutting the connection."""


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
        self.starts: list[WebSocketPlayout] = []
        self.ends: WebSocketPlayout | None = None


class WebSocketMediaSession:
    """A live chan_websocket connection, known from its MEDIA_START."""

    def __init__(
        self,
        ws: MediaSocket,
        start: MediaStart,
        *,
        shape: Shape,
        peer: str,
        config: SessionConfig | None = None,
    ) -> None:
        cfg = config or SessionConfig()
        rate = SLIN_FORMAT_RATES.get(start.format)
        if rate is None:
            raise ValueError(
                f"channel format {start.format!r} is not linear PCM: ask Asterisk for slin16 "
                "(externalMedia format=slin16, or c(slin16) in Dial(WebSocket/...))"
            )
        size = start.optimal_frame_size
        if size <= 0 or size % 2:
            raise ValueError(f"optimal_frame_size {size} is not a whole number of 16-bit samples")
        self.start = start
        self.shape: Shape = shape
        self.peer = peer
        self.config = cfg
        self._rate = rate
        self.frame_size = size
        self._per_message = max(1, min(cfg.frames_per_message, MAX_BINARY_PAYLOAD // size))
        limit = QUEUE_MAX - self._per_message
        self._max_ahead = limit if cfg.max_ahead_frames is None else min(cfg.max_ahead_frames, limit)
        if self._max_ahead < self._per_message:
            raise ValueError(f"max_ahead_frames must be at least {self._per_message}")
        self._ws = ws
        self._loop = asyncio.get_running_loop()
        self._inbound = InboundQueue(cfg.inbound_max_frames)
        self._wake = asyncio.Event()
        self._queue: deque[WebSocketPlayout] = deque()
        self._live: set[WebSocketPlayout] = set()
        self._marks: deque[_Mark] = deque()
        self._texts: deque[str] = deque()
        self._status_waiters: deque[asyncio.Future[Status]] = deque()
        self._seq = 0
        self._sent = 0
        self._confirmed = 0
        self._since_mark = 0
        self._xoff = False
        self._flush_pending = False
        self._hangup_requested = False
        self._marks_seen = False
        self._watchdog: asyncio.TimerHandle | None = None
        self._close_code = 1000
        self._closed = self._loop.create_future()
        self._warned: set[str] = set()
        self._sender: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self.close_reason: str | None = None
        self.stats = SessionStats()

    def __repr__(self) -> str:
        return f"<WebSocketMediaSession {self.channel_id} {self.start.format} {self.shape} {self.peer}>"

    # -- MediaTransport -------------------------------------------------------------------------------

    @property
    def rate(self) -> int:
        return self._rate

    @property
    def closed(self) -> bool:
        return self._closed.done()

    @property
    def channel_id(self) -> str | None:
        return self.start.channel_id

    @property
    def dropped_audio(self) -> int:
        return self._inbound.dropped_audio

    def events(self) -> AsyncIterator[InboundEvent]:
        return self._inbound.events()

    def play(self, source: PcmSource) -> WebSocketPlayout:
        """Queue PCM at :attr:`rate` after whatever is queued; a closed session returns a failed one."""
        playout = WebSocketPlayout(
            source,
            frame_size=self.frame_size,
            wake=self._wake.set,
            max_buffer=self.rate * 2 * self.config.stream_buffer_ms // 1000,
        )
        if self.closed:
            playout.finish(PlayoutState.FAILED, ConnectionError(f"media closed: {self.close_reason}"))
            return playout
        self._queue.append(playout)
        self._live.add(playout)
        self._wake.set()
        return playout

    def clear(self) -> int:
        """Barge-in: settle every live prompt as cleared now; FLUSH_MEDIA precedes any later frame."""
        cleared = 0
        for playout in self._live:
            if playout.finish(PlayoutState.CLEARED):
                cleared += 1
        self._live.clear()
        self._queue.clear()
        if cleared and not self.closed:
            self._flush_pending = True
            self.stats.flushes += 1
            self._wake.set()
        return cleared

    def hangup(self, reason: str = "hangup by application") -> None:
        """Send HANGUP and close; Asterisk hangs the channel up and closes its side (1000)."""
        if self.closed:
            return
        self._hangup_requested = True
        self._close(reason)

    # -- extras -------------------------------------------------------------------------------------

    async def status(self, timeout: float = 5.0) -> Status:
        """Asterisk's own view of the queue (GET_STATUS)."""
        if self.closed:
            raise ConnectionError(f"media closed: {self.close_reason}")
        waiter: asyncio.Future[Status] = self._loop.create_future()
        self._status_waiters.append(waiter)
        self._texts.append(self._command("GET_STATUS"))
        self._wake.set()
        async with asyncio.timeout(timeout):
            return await waiter

    async def wait_closed(self) -> str:
        return await asyncio.shield(self._closed)

    def add_close_callback(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the session is closed (at once if it already is)."""
        self._closed.add_done_callback(lambda _done: callback())

    async def aclose(self, reason: str = "closed by application") -> None:
        """Hang up (if still open) and wait until the connection and every task of it are gone."""
        self.hangup(reason)
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._reader)
        elif self._sender is not None:
            await self._join_sender()

    def start_reading(self) -> asyncio.Task[None]:
        """Run :meth:`run` in a task this session owns (client shape: nobody else reads the socket)."""
        if self._reader is None:
            self._reader = self._loop.create_task(self.run(), name=f"ivr-ws-media-{self.channel_id}")
        return self._reader

    async def run(self) -> None:
        """Read the socket until the connection is over; starts the sender. Never raises."""
        self._sender = self._loop.create_task(self._send_loop(), name=f"ivr-ws-send-{self.channel_id}")
        try:
            await self._read_loop()
        except asyncio.CancelledError:
            self._close("cancelled")
            raise
        except Exception as exc:  # a bug must cost this call only
            log.exception("media %s: reader failed", self.channel_id)
            self._close(f"reader failed: {exc}")
        finally:
            await self._join_sender()

    # -- reading ------------------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        ws = self._ws
        inbound = self._inbound
        rate = self._rate
        stats = self.stats
        while not self.closed:
            msg = await ws.receive()
            kind = msg.type
            if kind is WSMsgType.BINARY:
                data = msg.data
                if len(data) & 1:
                    self._fail(f"{len(data)}-byte audio message (odd: not 16-bit samples)")
                    return
                stats.frames_received += 1
                inbound.put(AudioIn(rate, data))
            elif kind is WSMsgType.TEXT:
                try:
                    self._on_text(msg.data)
                except ProtocolError as exc:
                    self._fail(str(exc))
                    return
            elif kind is WSMsgType.CLOSE:
                inbound.put(PeerHangup(f"Asterisk closed the media socket ({msg.data})"))
                self._close(f"Asterisk closed the media socket ({msg.data})")
                return
            elif kind is WSMsgType.ERROR:
                self._close(f"media socket error: {msg.data}")
                return
            elif kind in (WSMsgType.CLOSING, WSMsgType.CLOSED):
                self._close("media socket closed")
                return

    def _on_text(self, text: str) -> None:
        event = decode_event(text)
        if isinstance(event, MediaMarkProcessed):
            self._on_mark(event.correlation_id)
        elif isinstance(event, MediaXoff):
            self._xoff = True
            self.stats.xoff += 1
        elif isinstance(event, MediaXon):
            self._xoff = False
            self._wake.set()
        elif isinstance(event, DtmfEnd):
            self._inbound.put(DigitIn(event.digit))
        elif isinstance(event, Status):
            while self._status_waiters:
                waiter = self._status_waiters.popleft()
                if not waiter.done():
                    waiter.set_result(event)
                    break
        elif isinstance(event, ErrorEvent):
            self.stats.asterisk_errors += 1
            log.warning("media %s: Asterisk refused a command: %s", self.channel_id, event.error_text)
        elif isinstance(event, MediaStart):
            self._warn_once("MEDIA_START", "a second MEDIA_START; ignored")
        elif isinstance(event, UnknownEvent):
            self._warn_once(event.name, f"unknown event {event.name}; ignored")
        # QUEUE_DRAINED and MEDIA_BUFFERING_COMPLETED answer commands this session never sends.

    def _on_mark(self, correlation_id: str) -> None:
        marks = self._marks
        try:
            seq = int(correlation_id)
        except ValueError:
            self._warn_once("mark", f"MEDIA_MARK_PROCESSED {correlation_id[:40]!r} is not one of ours")
            return
        if not marks or seq < marks[0].seq:
            return  # its mark was flushed (or answered) already
        if seq > marks[-1].seq:
            self._warn_once("mark", f"MEDIA_MARK_PROCESSED {seq} was never sent")
            return
        if not self._marks_seen:
            self._marks_seen = True
            if self._watchdog is not None:
                self._watchdog.cancel()
        now = self._loop.time()
        while marks:
            mark = marks.popleft()
            self.stats.marks_answered += 1
            if mark.sent > self._confirmed:
                self._confirmed = mark.sent
            for playout in mark.starts:
                playout.started(now)
            ended = mark.ends
            if ended is not None and ended.finish(PlayoutState.COMPLETED):
                self._live.discard(ended)
            if mark.seq == seq:
                break
        self._wake.set()

    # -- sending ------------------------------------------------------------------------------------

    async def _send_loop(self) -> None:
        wake = self._wake
        try:
            await self._send_mark(probe=True)
            while not self.closed:
                wake.clear()
                if self._texts:
                    await self._send_text(self._texts.popleft())
                    continue
                if self._flush_pending:
                    await self._flush()
                    continue
                queue = self._queue
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
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the connection broke under a write
            self._close(f"media socket write failed: {exc}")
        finally:
            await self._finish_connection()

    async def _send_audio(self, chunk: bytes | memoryview, frames: int, playout: WebSocketPlayout) -> None:
        self._sent += frames
        self._since_mark += frames
        playout.frames += frames
        stats = self.stats
        stats.frames_sent += frames
        stats.messages_sent += 1
        unconfirmed = self._sent - self._confirmed
        if unconfirmed > stats.max_unconfirmed:
            stats.max_unconfirmed = unconfirmed
        # aiohttp writes any bytes-like object; a memoryview slice of the prompt saves a copy.
        await self._ws.send_bytes(chunk)  # type: ignore[arg-type]
        if self._since_mark >= self.config.credit_every:
            await self._send_mark()

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
        self.stats.marks_sent += 1
        if probe:
            if self._watchdog is not None:
                self._watchdog.cancel()
            self._watchdog = self._loop.call_later(self.config.mark_timeout, self._marks_missing)
        await self._send_text(self._command("MARK_MEDIA", str(mark.seq)))

    async def _flush(self) -> None:
        self._flush_pending = False
        await self._send_text(self._command("FLUSH_MEDIA"))
        # Asterisk drops everything queued before the flush, pending marks included.
        self._marks.clear()
        self._confirmed = self._sent
        self._since_mark = 0
        self._xoff = False
        if not self._marks_seen:
            await self._send_mark(probe=True)  # the probe may have been flushed

    async def _send_text(self, text: str) -> None:
        await self._ws.send_str(text)

    def _command(self, verb: str, argument: str | None = None) -> str:
        return encode_command(Command(verb, argument), self.start.form)

    def _marks_missing(self) -> None:
        if self._marks_seen or self.closed:
            return
        log.error(
            "media %s: Asterisk did not answer MARK_MEDIA within %g s; WebSocket media needs Asterisk "
            "22.8+ (20.18+ on the 20 branch) for marks: upgrade, or use AudioSocket",
            self.channel_id,
            self.config.mark_timeout,
        )
        self._hangup_requested = True
        self._close("Asterisk does not answer MARK_MEDIA (chan_websocket before 22.8?)")

    # -- closing ------------------------------------------------------------------------------------

    def _fail(self, why: str) -> None:
        log.warning("media %s from %s: %s; closing this session", self.channel_id, self.peer, why)
        self._close_code = 1002
        self._close(f"protocol error: {why}")

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("media %s: %s", self.channel_id, message)

    def _close(self, reason: str) -> None:
        if self._closed.done():
            return
        self.close_reason = reason
        if self._watchdog is not None:
            self._watchdog.cancel()
        for playout in self._live:
            playout.finish(PlayoutState.CLEARED)
        self._live.clear()
        self._queue.clear()
        for waiter in self._status_waiters:
            if not waiter.done():
                waiter.set_exception(ConnectionError(f"media closed: {reason}"))
        self._status_waiters.clear()
        self._inbound.put(MediaClosed(reason))
        self._closed.set_result(reason)
        self._wake.set()
        log.info("media %s closed: %s", self.channel_id, reason)

    async def _finish_connection(self) -> None:
        ws = self._ws
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.config.close_timeout):
                if self._hangup_requested:
                    await ws.send_str(self._command("HANGUP"))
                await ws.close(code=self._close_code)

    async def _join_sender(self) -> None:
        sender = self._sender
        if sender is None or sender.done():
            return
        self._wake.set()
        try:
            async with asyncio.timeout(self.config.close_timeout * 2):
                await asyncio.shield(sender)
        except TimeoutError:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender


async def read_media_start(ws: MediaSocket, timeout: float) -> MediaStart:
    """The first message of a connection, which chan_websocket always makes MEDIA_START."""
    try:
        msg = await ws.receive(timeout=timeout)
    except TimeoutError:
        raise TimeoutError(f"no MEDIA_START within {timeout:g} s") from None
    if msg.type is not WSMsgType.TEXT:
        raise ProtocolError(f"first message was {msg.type.name}, not MEDIA_START")
    event = decode_event(msg.data)
    if not isinstance(event, MediaStart):
        raise ProtocolError(f"first message was {type(event).__name__}, not MEDIA_START")
    return event
