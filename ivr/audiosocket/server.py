"""The AudioSocket TCP server: one session per connection, registered by the UUID it announces.

Two ways in:

* **expect** (ARI ``externalMedia``): the app registers the UUID and the format it is about to ask
  Asterisk for, *before* the REST call (a real Asterisk connects before its HTTP reply returns), then
  awaits the session. Unexpected UUIDs are refused when no accept handler is set.
* **accept** (dialplan ``AudioSocket()`` / ``Dial(AudioSocket/...)``): any new UUID gets a session and
  the ``on_session`` handler runs in a task the server owns; the session starts at 8 kHz (the
  ``AudioSocket()`` app's rate) until audio of another rate arrives. Only these sessions have an idle
  timeout: a held or silent caller on an expected call sends nothing and must not be hung up.

Connections are :class:`asyncio.BufferedProtocol` objects that all read into the server's one preallocated
buffer (the loop reads one socket at a time and nothing keeps a view of the buffer past the callback), the
usual message (one 20 ms audio frame of the session's rate) is parsed without a frame object, and all
sessions share one :class:`~ivr.audiosocket.clock.FrameClock`. A malformed message costs only its own
session (hangup message, close, one log line); EOF always closes our side at once (no CLOSE-WAIT).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import cast

from ivr.audiosocket.clock import Clock, FrameClock, LoopClock
from ivr.audiosocket.memory import release_free_memory
from ivr.audiosocket.native import NativePacer, native_available, realtime_loop
from ivr.audiosocket.protocol import (
    DEFAULT_MAX_PAYLOAD,
    HANGUP_MESSAGE,
    HEADER_SIZE,
    MAX_WIRE_PAYLOAD,
    Frame,
    FrameDecoder,
    ProtocolError,
    Uuid,
    rate_for_format,
)
from ivr.audiosocket.session import AudioSocketSession, SessionMode
from ivr.listener import BatchedListener
from ivr.transport import end_handlers

log = logging.getLogger(__name__)

SessionHandler = Callable[[AudioSocketSession], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class AudioSocketConfig:
    host: str = "127.0.0.1"
    port: int = 9092
    uuid_timeout: float = 5.0
    """Seconds a new connection has to send its UUID."""
    idle_timeout: float | None = 30.0
    """Accept mode only: hang up a session that sent nothing for this long (None: never)."""
    max_connections: int = 1000
    max_per_source: int = 0
    """Connections from one address at once (0: no limit); for dialplan-only mode's open door."""
    max_payload: int = DEFAULT_MAX_PAYLOAD
    inbound_max_frames: int = 50
    """Audio frames queued for a slow consumer before the oldest are dropped (50 = 1 s)."""
    prebuffer_ms: int = 60
    write_buffer_limit: int = 64 * 1024
    """Bytes queued towards a peer that stopped reading before frames are dropped instead."""
    accept_format: str = "slin"
    linger: float = 1.0
    """After our hangup: seconds the peer has to close its side (Asterisk takes ms) before we close."""
    reuse_port: bool = False
    """SO_REUSEPORT: several worker processes share one port, the kernel spreads connections over them
    (dialplan-only mode with ``--workers N``)."""
    pacer: str = "auto"
    """Who paces outbound frames: ``native`` (a thread of ours in C: :mod:`ivr.audiosocket.native`),
    ``loop`` (the event loop's frame clock) or ``auto`` (native where it is built and the loop runs on
    the system clock, else the loop)."""
    pacer_realtime: int = 0
    """SCHED_FIFO priority of the native pacing thread (1-99) where the process may set it; 0: normal."""
    trim_interval: float | None = 30.0
    """Give freed memory back to the system (:mod:`ivr.audiosocket.memory`) this often while calls are
    live, and once as soon as the last call has ended (None: never)."""


@dataclass(slots=True)
class ServerStats:
    connections: int = 0
    refused_capacity: int = 0
    refused_unexpected: int = 0
    refused_duplicate: int = 0
    protocol_errors: int = 0
    uuid_timeouts: int = 0
    idle_timeouts: int = 0
    handler_errors: int = 0


@dataclass(slots=True)
class Expectation:
    """A UUID the app is about to ask Asterisk to connect with, and the rate it asked for."""

    uuid: uuid.UUID
    rate: int
    future: asyncio.Future[AudioSocketSession] = field(repr=False)
    _server: AudioSocketServer = field(repr=False)

    async def wait(self, timeout: float) -> AudioSocketSession:
        """The session once its UUID arrived; TimeoutError (and the expectation is dropped) if not."""
        try:
            return await asyncio.wait_for(asyncio.shield(self.future), timeout)
        except TimeoutError:
            self.cancel()
            raise TimeoutError(f"no AudioSocket connection for {self.uuid} within {timeout:g} s") from None

    def cancel(self) -> None:
        self._server._expected.pop(self.uuid, None)
        if not self.future.done():
            self.future.cancel()


class AudioSocketServer:
    def __init__(
        self,
        config: AudioSocketConfig | None = None,
        *,
        on_session: SessionHandler | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.config = config or AudioSocketConfig()
        if not 0 < self.config.max_payload <= MAX_WIRE_PAYLOAD:
            raise ValueError(f"max_payload must be within 1..{MAX_WIRE_PAYLOAD}")
        self.on_session = on_session
        self._clock = clock
        self.frame_clock: FrameClock | None = None
        self.pacer: NativePacer | None = None
        """The native pacing thread, when it paces (see ``AudioSocketConfig.pacer``)."""
        self.stats = ServerStats()
        self.sessions: dict[uuid.UUID, AudioSocketSession] = {}
        self._expected: dict[uuid.UUID, Expectation] = {}
        self._connections: set[_Connection] = set()
        self._per_source: dict[str, int] = {}
        self._handlers: set[asyncio.Task[None]] = set()
        self._server: BatchedListener | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._trimmer: asyncio.Task[None] | None = None
        self.trims = 0
        """Times freed memory was given back (see ``AudioSocketConfig.trim_interval``)."""
        self._accept_rate = rate_for_format(self.config.accept_format)
        # One read buffer for every connection: the loop reads into it and calls buffer_updated at once,
        # and nothing keeps a view of it past that call (audio is copied out, partial messages too).
        self._read_buffer = bytearray(self.config.max_payload + HEADER_SIZE)
        self._read_view = memoryview(self._read_buffer)

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        clock = self._clock or LoopClock(loop)
        self.frame_clock = FrameClock(clock)
        self.pacer = self._make_pacer(loop)
        # Accepted in batches: a busy loop turns every 100-300 ms, and one accept per turn (uvloop's own
        # server) left a burst of Asterisk's connections queued past their set-up deadline.
        server = BatchedListener(
            lambda: _Connection(self),
            self.config.host,
            self.config.port,
            reuse_port=self.config.reuse_port,
            backlog=1024,
        )
        await server.start()
        self._server = server
        if self.on_session is not None and self.config.idle_timeout:
            self._sweeper = loop.create_task(self._sweep_idle(self.config.idle_timeout), name="ivr-as-idle")
        if self.config.trim_interval is not None:
            self._trimmer = loop.create_task(self._trim_memory(self.config.trim_interval), name="ivr-as-trim")
        log.info("AudioSocket listening on %s:%d, %s pacing", *self.address, self.pacing)

    def _make_pacer(self, loop: asyncio.AbstractEventLoop) -> NativePacer | None:
        choice = self.config.pacer
        if choice not in ("auto", "native", "loop"):
            raise ValueError(f"pacer must be auto, native or loop, not {choice!r}")
        if choice == "loop" or self._clock is not None:
            return None
        if choice == "auto" and not (native_available() and realtime_loop(loop)):
            return None
        if not realtime_loop(loop):
            raise RuntimeError("the native pacer needs a loop on the system clock (not virtual time)")
        # The session's queue drops the oldest audio of a slow consumer; the thread's own bound (2 s, at least
        # twice the queue's) only keeps a stalled loop from piling up memory.
        inbound_max = max(100, 2 * self.config.inbound_max_frames)
        return NativePacer(loop, realtime=self.config.pacer_realtime, inbound_max=inbound_max)

    @property
    def pacing(self) -> str:
        """``native`` or ``loop``: who paces this server's sessions."""
        return "native" if self.pacer is not None else "loop"

    @property
    def address(self) -> tuple[str, int]:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("server not started")
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    @property
    def port(self) -> int:
        return self.address[1]

    async def stop_accepting(self) -> None:
        """Stop listening for new connections; live sessions go on (graceful shutdown)."""
        if self._server is not None:
            self._server.close()

    async def close(self) -> None:
        """Stop listening, hang up every session, cancel every task the server owns."""
        if self._server is not None:
            self._server.close()
        for task in (self._sweeper, self._trimmer):
            if task is not None:
                task.cancel()
        for expectation in list(self._expected.values()):
            expectation.cancel()
        for conn in list(self._connections):
            conn.shutdown("server closing")
        await end_handlers(self._handlers)
        await asyncio.gather(
            *(t for t in (self._sweeper, self._trimmer) if t is not None), return_exceptions=True
        )
        # Let every peer answer our FIN with its own before the process goes (no reset at exit).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.config.linger):
                while self._connections:  # noqa: ASYNC110 - connections leave in connection_lost
                    await asyncio.sleep(0.01)
        for conn in list(self._connections):
            conn.transport.abort()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        if self.frame_clock is not None:
            self.frame_clock.close()
        if self.pacer is not None:
            self.pacer.close()

    async def __aenter__(self) -> AudioSocketServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- expectations ----------------------------------------------------------------------------

    def expect(self, call_id: uuid.UUID, fmt: str = "slin16") -> Expectation:
        """Register a UUID before asking Asterisk to connect with it (synchronous on purpose)."""
        if call_id in self._expected or call_id in self.sessions:
            raise ValueError(f"UUID {call_id} is already expected or live")
        loop = asyncio.get_running_loop()
        expectation = Expectation(call_id, rate_for_format(fmt), loop.create_future(), self)
        self._expected[call_id] = expectation
        return expectation

    async def wait_session(self, call_id: uuid.UUID, timeout: float) -> AudioSocketSession:
        expectation = self._expected.get(call_id)
        if expectation is None:
            session = self.sessions.get(call_id)
            if session is not None:
                return session
            raise KeyError(f"UUID {call_id} is not expected")
        return await expectation.wait(timeout)

    # -- called by connections -------------------------------------------------------------------

    def _open_session(self, conn: _Connection, call_id: uuid.UUID) -> AudioSocketSession | None:
        if call_id in self.sessions:
            self.stats.refused_duplicate += 1
            log.warning("AudioSocket %s: refused, UUID %s is already live", conn.peer, call_id)
            return None
        expectation = self._expected.pop(call_id, None)
        mode: SessionMode
        if expectation is not None and not expectation.future.done():
            rate, mode = expectation.rate, "expected"
        elif self.on_session is not None:
            rate, mode = self._accept_rate, "accepted"
        else:
            self.stats.refused_unexpected += 1
            log.warning("AudioSocket %s: refused unexpected UUID %s", conn.peer, call_id)
            return None
        assert self.frame_clock is not None
        session = AudioSocketSession(
            call_id,
            transport=conn.transport,
            rate=rate,
            mode=mode,
            frame_clock=self.frame_clock,
            inbound_max_frames=self.config.inbound_max_frames,
            prebuffer_ms=self.config.prebuffer_ms,
            peer=conn.peer,
            close_transport=conn.close_gracefully,
            pacer=self.pacer,
        )
        self.sessions[call_id] = session
        if expectation is not None:
            expectation.future.set_result(session)
        else:
            assert self.on_session is not None
            task = asyncio.get_running_loop().create_task(
                self._run_handler(self.on_session, session), name=f"ivr-as-{call_id}"
            )
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)
        return session

    def _forget(self, session: AudioSocketSession) -> None:
        if self.sessions.get(session.uuid) is session:
            del self.sessions[session.uuid]

    async def _run_handler(self, handler: SessionHandler, session: AudioSocketSession) -> None:
        try:
            await handler(session)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.stats.handler_errors += 1
            log.error("session %s from %s: handler failed: %r", session.uuid, session.peer, exc)
            log.debug("session %s: handler failed", session.uuid, exc_info=True)
        finally:
            session.hangup("handler finished")

    async def _trim_memory(self, interval: float, tick: float = 1.0) -> None:
        """Every ``interval`` s while sessions are live, and within ``tick`` s of the last one ending."""
        live_for = 0.0  # since calls became live, or since the last trim while they were
        had_calls = False
        while True:
            await asyncio.sleep(tick)
            if self._connections:
                had_calls = True
                live_for += tick
                if live_for < interval:
                    continue
            elif not had_calls:
                continue
            else:
                had_calls = False
                # The last call has ended: collect the calls' reference cycles first (a full collection is
                # rare under gc's own thresholds, so their memory would wait for it), then give pages back.
                gc.collect()
            live_for = 0.0
            release_free_memory()
            self.trims += 1

    async def _sweep_idle(self, idle_timeout: float) -> None:
        interval = min(1.0, idle_timeout / 4)
        idle: dict[uuid.UUID, float] = {}
        while True:
            await asyncio.sleep(interval)
            for call_id, session in list(self.sessions.items()):
                if session.mode != "accepted":
                    continue
                if session.rx_since_sweep:
                    session.rx_since_sweep = False
                    idle.pop(call_id, None)
                    continue
                idle[call_id] = waited = idle.get(call_id, 0.0) + interval
                if waited >= idle_timeout:
                    self.stats.idle_timeouts += 1
                    log.warning("session %s: nothing received for %g s, hanging up", call_id, idle_timeout)
                    session.hangup("idle timeout")
            for call_id in [c for c in idle if c not in self.sessions]:
                del idle[call_id]


class _Connection(asyncio.BufferedProtocol):
    """One TCP connection: UUID handshake, then frames into its session."""

    def __init__(self, server: AudioSocketServer) -> None:
        self.server = server
        cfg = server.config
        self.decoder = FrameDecoder(cfg.max_payload)
        self._buffer = server._read_buffer
        self._view = server._read_view
        self.session: AudioSocketSession | None = None
        self.transport: asyncio.Transport
        self.peer = "?"
        self.source = "?"
        self._uuid_timer: asyncio.TimerHandle | None = None
        self._lingering: asyncio.TimerHandle | None = None
        self._done = False
        self._hand_over = False
        """The session is paced natively: hand its socket's reading to the pacer's thread next."""
        self._native_reading = False
        self._native_error: OSError | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = cast(asyncio.Transport, transport)
        transport = self.transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.source = str(peer[0]) if isinstance(peer, tuple) else self.peer
        server = self.server
        server.stats.connections += 1
        server._connections.add(self)
        per_source = server._per_source[self.source] = server._per_source.get(self.source, 0) + 1
        cfg = server.config
        if len(server._connections) > cfg.max_connections:
            self._refuse(f"{cfg.max_connections} connections is the limit")
            return
        if cfg.max_per_source and per_source > cfg.max_per_source:
            self._refuse(f"{cfg.max_per_source} connections from {self.source} is the limit")
            return
        transport.set_write_buffer_limits(high=server.config.write_buffer_limit)
        loop = asyncio.get_running_loop()
        self._uuid_timer = loop.call_later(server.config.uuid_timeout, self._uuid_timeout)

    def _refuse(self, why: str) -> None:
        stats = self.server.stats
        stats.refused_capacity += 1
        if stats.refused_capacity == 1 or stats.refused_capacity % 1000 == 0:  # no log flood under attack
            log.warning(
                "AudioSocket %s: refused, %s (%d refused so far)", self.peer, why, stats.refused_capacity
            )
        self.shutdown("over connection limit")

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        if self._done:
            return
        session = self.session
        if session is not None and nbytes == session.audio_message and not self.decoder.buffered:
            # The usual read: exactly one 20 ms audio message of the session's rate. Parsed here, with
            # no frame object; anything else takes the decoder below.
            buf = self._buffer
            if buf[0] == session.audio_kind and (buf[1] << 8) | buf[2] == nbytes - HEADER_SIZE:
                self.decoder.skip(nbytes)
                session.on_audio_payload(self._view[HEADER_SIZE:nbytes].tobytes())
                if self._hand_over:
                    self._to_native()
                return
        self._feed(self._view[:nbytes])
        if self._hand_over:
            self._to_native()

    def _to_native(self) -> None:
        """From here on the pacer's thread reads this socket (once no partial message is left here)."""
        session = self.session
        native = session.native if session is not None else None
        if self._done or native is None:
            self._hand_over = False
            return
        if self.decoder.buffered:
            return  # the rest of that message comes with the next read
        self._hand_over = False
        self.transport.pause_reading()
        self._native_reading = True
        native.pacer.read(native, self)

    # -- the native thread's reads (ivr.audiosocket.native.NativeReader) --

    def native_audio(self, payload: bytes, level: float) -> None:
        session = self.session
        if not self._done and session is not None:
            self.decoder.skip(HEADER_SIZE + len(payload))  # the stream offset stays true for error lines
            session.on_audio_payload(payload, level)

    def native_raw(self, data: bytes) -> None:
        if not self._done:
            session = self.session
            if session is not None and session.routed_bytes:  # audio routed past us came first
                self.decoder.skip(session.routed_bytes)
                session.routed_bytes = 0
            self._feed(data)

    def native_name(self) -> str:
        return self._name()

    def native_closed(self, err: int) -> None:
        self._native_reading = False
        if err:
            self._native_error = OSError(err, os.strerror(err))
        if self.session is not None:
            # Off the thread before the socket can close: a loop that closes the descriptor before it
            # calls connection_lost (uvloop may) must not leave the thread writing to a number reused.
            self.session.stop_pacing()
        if not self.transport.is_closing():
            self.transport.close()  # as eof_received: close our side at once (connection_lost follows)

    def _feed(self, data: bytes | memoryview) -> None:
        try:
            frames = self.decoder.feed(data)
        except ProtocolError as exc:
            self._dispatch(exc.frames)
            if not self._done:
                self.server.stats.protocol_errors += 1
                log.warning("AudioSocket %s (%s): protocol error, closing: %s", self.peer, self._name(), exc)
                self.shutdown(f"protocol error: {exc}")
            return
        self._dispatch(frames)

    def _dispatch(self, frames: list[Frame]) -> None:
        for frame in frames:
            if self._done:
                return
            session = self.session
            if session is not None:
                session.on_frame(frame)
                if session.closed:
                    self._done = True
                continue
            if type(frame) is not Uuid:
                self.server.stats.protocol_errors += 1
                log.warning("AudioSocket %s: first message is %r, not a UUID; closing", self.peer, frame)
                self.shutdown("first message was not a UUID")
                return
            if self._uuid_timer is not None:
                self._uuid_timer.cancel()
                self._uuid_timer = None
            self.session = self.server._open_session(self, frame.uuid)
            if self.session is None:
                self.shutdown("refused")
                return
            self._hand_over = self.session.native is not None

    def _name(self) -> str:
        return str(self.session.uuid) if self.session else "no UUID yet"

    def _uuid_timeout(self) -> None:
        self._uuid_timer = None
        if self.session is None and not self._done:
            self.server.stats.uuid_timeouts += 1
            log.warning(
                "AudioSocket %s: no UUID within %g s, closing", self.peer, self.server.config.uuid_timeout
            )
            self.shutdown("no UUID in time")

    def shutdown(self, reason: str) -> None:
        """Hang up (hangup message, then close) and end the session with ``reason``."""
        self._done = True
        if self.session is not None:
            self.session.hangup(reason)
        elif not self.transport.is_closing():
            self.transport.write(HANGUP_MESSAGE)
            self.transport.close()  # no call yet (refused, malformed): no need to wait for the peer

    def close_gracefully(self) -> None:
        """Close without a reset: stop writing (FIN after what is queued), keep reading and dropping what
        the peer still sends until its own FIN (``eof_received`` then closes), or ``linger`` seconds.

        A plain close() with the peer's frames unread (or arriving after it) makes the kernel answer with
        a reset, which Asterisk logs as an error after the hangup message.
        """
        self._done = True
        if self.session is not None:
            self.server._forget(self.session)  # the call is over; only the socket lingers
        transport = self.transport
        if self._native_reading:  # the session's end took the socket off the thread: read (and drop) here
            self._native_reading = False
            if not transport.is_closing():
                transport.resume_reading()
        if transport.is_closing() or self._lingering is not None:
            return
        if not transport.can_write_eof():
            transport.close()
            return
        try:
            transport.write_eof()
        except OSError:  # the peer is gone already (reset): nothing to be graceful about
            transport.close()
            return
        self._lingering = asyncio.get_running_loop().call_later(self.server.config.linger, transport.close)

    def pause_writing(self) -> None:
        if self.session is not None:
            self.session.player.paused = True

    def resume_writing(self) -> None:
        if self.session is not None:
            self.session.player.paused = False

    def eof_received(self) -> bool:
        # Returning False closes our side at once: a half-closed socket left in CLOSE-WAIT has
        # frozen a production Asterisk elsewhere.
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        exc = exc or self._native_error
        reading = not self._done  # the peer went away on its own while we were still reading
        self._done = True
        if self._uuid_timer is not None:
            self._uuid_timer.cancel()
            self._uuid_timer = None
        if self._lingering is not None:
            self._lingering.cancel()
        server = self.server
        if self in server._connections:
            server._connections.discard(self)
            left = server._per_source.get(self.source, 1) - 1
            if left > 0:
                server._per_source[self.source] = left
            else:
                server._per_source.pop(self.source, None)
        session = self.session
        pending = self.decoder.buffered
        if pending and reading and exc is None:
            log.warning(
                "AudioSocket %s (%s): closed in the middle of a message (%d bytes of it received)",
                self.peer,
                self._name(),
                pending,
            )
        if session is not None:
            reason = "peer closed the connection" if exc is None else f"connection lost: {exc}"
            session.connection_lost(reason)
            self.server._forget(session)
