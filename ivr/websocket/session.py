"""One call's WebSocket media connection (chan_websocket): :class:`ivr.transport.MediaTransport`.

Asterisk paces this media itself: its 20 ms timer takes one frame from a queue the app fills ahead of
time, so the session has no frame clock and nothing in it sleeps per frame. It reads the socket (caller
audio, DTMF_END, flow control, marks) and hands the sending to its :class:`~ivr.websocket.sender.Sender`.
A malformed message closes this session only (one log line); Asterisk's close frame is the peer's
hangup (chan_websocket sends no text for it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Literal

from aiohttp import WSMsgType

from ivr.transport import (
    SLIN_FORMAT_RATES,
    AudioSink,
    DigitIn,
    InboundEvent,
    InboundQueue,
    MeasuredSink,
    MediaClosed,
    MediaStats,
    PcmSource,
    PeerHangup,
    PlayedTap,
    PlayoutState,
)
from ivr.websocket.playout import WebSocketPlayout
from ivr.websocket.protocol import (
    MAX_BINARY_PAYLOAD,
    QUEUE_MAX,
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
)
from ivr.websocket.sender import MediaSocket, Sender, SessionStats

log = logging.getLogger(__name__)

_OWN_COMMANDS = frozenset({"MARK_MEDIA", "FLUSH_MEDIA", "HANGUP", "GET_STATUS", "START_MEDIA_BUFFERING"})

Shape = Literal["client", "server"]
"""``client``: the app connected to Asterisk's /media/<id>; ``server``: Asterisk connected to the app."""


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
        per_message = max(1, min(cfg.frames_per_message, MAX_BINARY_PAYLOAD // size))
        limit = QUEUE_MAX - per_message
        max_ahead = limit if cfg.max_ahead_frames is None else min(cfg.max_ahead_frames, limit)
        if max_ahead < per_message:
            raise ValueError(f"max_ahead_frames must be at least {per_message}")
        self.start = start
        self.shape: Shape = shape
        self.peer = peer
        self.config = cfg
        self._rate = rate
        self.frame_size = size
        self._ws = ws
        self._loop = asyncio.get_running_loop()
        self._inbound = InboundQueue(cfg.inbound_max_frames)
        self.stats = SessionStats()
        self._out = Sender(
            ws,
            form=start.form,
            frame_size=size,
            per_message=per_message,
            max_ahead=max_ahead,
            credit_every=cfg.credit_every,
            mark_timeout=cfg.mark_timeout,
            stream_buffer=rate * 2 * cfg.stream_buffer_ms // 1000,
            stats=self.stats,
            on_marks_missing=self._marks_missing,
            frame_s=(start.ptime or 20) / 1000,
        )
        self._status_waiters: deque[asyncio.Future[Status]] = deque()
        self._hangup_requested = False
        self._close_code = 1000
        self._closed = self._loop.create_future()
        self._warned: set[str] = set()
        self._sender: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self.close_reason: str | None = None

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
    def marks_confirmed(self) -> bool:
        """Asterisk has answered a MARK_MEDIA (so it is 22.8+ and prompt ends will be reported)."""
        return self._out.marks_seen

    @property
    def dropped_audio(self) -> int:
        return self._inbound.dropped_audio

    def media_stats(self) -> MediaStats:
        """What this call's media counted (read at the call's end): Asterisk paces, so no lateness of
        ours; nothing outbound is ever dropped (the sender waits on XOFF instead)."""
        return MediaStats(
            "websocket", self.dropped_audio, 0, None, self.stats.xoff,
            preroll_discarded=self._inbound.preroll_discarded,
        )  # fmt: skip

    def events(self) -> AsyncIterator[InboundEvent]:
        return self._inbound.events()

    def on_measured_audio(self, sink: MeasuredSink | None) -> None:
        """WebSocket media measures nothing: every frame goes to :meth:`on_audio`'s sink."""

    def on_audio(self, sink: AudioSink | None) -> None:
        self._inbound.sink = sink

    def play(self, source: PcmSource) -> WebSocketPlayout:
        """Queue PCM at :attr:`rate` after whatever is queued; a closed session returns a failed one."""
        if self.closed:
            playout = WebSocketPlayout(source, frame_size=self.frame_size, wake=_nothing, max_buffer=0)
            playout.finish(PlayoutState.FAILED, ConnectionError(f"media closed: {self.close_reason}"))
            return playout
        return self._out.play(source)

    def clear(self) -> int:
        """Barge-in: settle every live prompt as cleared now; FLUSH_MEDIA precedes any later frame."""
        return self._out.clear()

    def pause(self) -> bool:
        """PAUSE_MEDIA: Asterisk keeps its queue and plays silence until :meth:`resume`."""
        return self._out.pause()

    def resume(self) -> None:
        self._out.resume()

    def on_played(self, tap: PlayedTap | None) -> None:
        self._out.tap = tap

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
        self._out.queue_text(self._out.command("GET_STATUS"))
        async with asyncio.timeout(timeout):
            return await waiter

    def send_command(self, verb: str, argument: str | None = None) -> None:
        """Another chan_websocket command (PAUSE_MEDIA, CONTINUE_MEDIA, SET_MEDIA_DIRECTION...), sent
        before any further audio. The ones the session's bookkeeping depends on are refused here."""
        if verb in _OWN_COMMANDS:
            raise ValueError(f"{verb} belongs to the session: use play(), clear(), hangup() or status()")
        if not self.closed:
            self._out.queue_text(self._out.command(verb, argument))

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
                inbound.put_audio(rate, data)
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
            complaint = self._out.on_mark(event.correlation_id)
            if complaint is not None:
                self._warn_once("mark", complaint)
        elif isinstance(event, MediaXoff):
            self._out.on_xoff()
        elif isinstance(event, MediaXon):
            self._out.on_xon()
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

    # -- sending ------------------------------------------------------------------------------------

    async def _send_loop(self) -> None:
        try:
            await self._out.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the connection broke under a write
            self._close(f"media socket write failed: {exc}")
        finally:
            await self._finish_connection()

    def _marks_missing(self) -> None:
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
        self._out.close()
        for waiter in self._status_waiters:
            if not waiter.done():
                waiter.set_exception(ConnectionError(f"media closed: {reason}"))
        self._status_waiters.clear()
        self._inbound.put(MediaClosed(reason))
        self._closed.set_result(reason)
        log.info("media %s closed: %s", self.channel_id, reason)

    async def _finish_connection(self) -> None:
        ws = self._ws
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.config.close_timeout):
                if self._hangup_requested:
                    await ws.send_str(self._out.command("HANGUP"))
                await ws.close(code=self._close_code)

    async def _join_sender(self) -> None:
        sender = self._sender
        if sender is None or sender.done():
            return
        self._out.wake.set()
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


def _nothing() -> None:
    pass
