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
The connection itself (handshake, the per-frame read, graceful close) is :mod:`ivr.audiosocket.connection`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ivr.audiosocket.clock import Clock, FrameClock, LoopClock
from ivr.audiosocket.config import AudioSocketConfig as AudioSocketConfig  # where callers import it from
from ivr.audiosocket.config import ServerStats as ServerStats
from ivr.audiosocket.connection import _Connection
from ivr.audiosocket.memory import release_free_memory
from ivr.audiosocket.native import NativePacer, native_available, realtime_loop
from ivr.audiosocket.protocol import HEADER_SIZE, MAX_WIRE_PAYLOAD, rate_for_format
from ivr.audiosocket.session import AudioSocketSession, SessionMode
from ivr.listener import BatchedListener
from ivr.transport import end_handlers

log = logging.getLogger(__name__)

SessionHandler = Callable[[AudioSocketSession], Awaitable[None]]


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
        activity: Callable[[], tuple[int, int]] | None = None,
    ) -> None:
        """``activity``: what the memory trimmer watches besides the connections, ``(a count that moves
        whenever calls come or go, calls live)``; the serving process passes its calls (an ARI call's
        teardown goes on over REST after its media connection closed)."""
        self.config = config or AudioSocketConfig()
        self._activity = activity
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
        self.read_buffer = bytearray(self.config.max_payload + HEADER_SIZE)
        self.read_view = memoryview(self.read_buffer)

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

    # -- called by connections (their ConnectionHost) ---------------------------------------------

    def admit(self, conn: _Connection) -> str | None:
        """Count a new connection in; why it is over a limit (then it is refused), or None."""
        self._connections.add(conn)
        per_source = self._per_source[conn.source] = self._per_source.get(conn.source, 0) + 1
        cfg = self.config
        if len(self._connections) > cfg.max_connections:
            return f"{cfg.max_connections} connections is the limit"
        if cfg.max_per_source and per_source > cfg.max_per_source:
            return f"{cfg.max_per_source} connections from {conn.source} is the limit"
        return None

    def release(self, conn: _Connection) -> None:
        """Count a closed connection out (idempotent)."""
        if conn in self._connections:
            self._connections.discard(conn)
            left = self._per_source.get(conn.source, 1) - 1
            if left > 0:
                self._per_source[conn.source] = left
            else:
                self._per_source.pop(conn.source, None)

    def open_session(self, conn: _Connection, call_id: uuid.UUID) -> AudioSocketSession | None:
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

    def forget(self, session: AudioSocketSession) -> None:
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
        """Give freed memory back once a wave of call set-ups or endings has settled (a ``tick`` without
        a connection or a call coming or going), and every ``interval`` s while calls are live.

        A wave leaves the heap at its high-water mark (set-up buffers, the ended calls' state); trimmed
        only every ``interval`` s, the live calls would look that much bigger until the next trim. Under
        steady churn nothing settles and the interval alone applies.
        """
        activity = self._activity

        def now() -> tuple[int, int, int, int]:
            calls = activity() if activity is not None else (0, 0)
            return self.stats.connections, len(self._connections), calls[0], calls[1]

        seen = now()
        changed = False  # connections or calls came or went since the last trim
        since = 0.0  # calls have been live since the last trim
        while True:
            await asyncio.sleep(tick)
            current = now()
            live = current[1] > 0 or current[3] > 0
            since += tick if live else 0.0
            moving, seen = current != seen, current
            changed = changed or moving
            settled = changed and not moving
            if not settled and not (live and since >= interval):
                continue
            if not live:
                # The last call has ended: collect the calls' reference cycles first (a full collection is
                # rare under gc's own thresholds, so their memory would wait for it), then give pages back.
                # Never while calls are live: a full collection over their state would stall the loop.
                gc.collect()
            changed, since = False, 0.0
            if self.pacer is not None:
                self.pacer.trim()
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
                if session.received_since_sweep():
                    idle.pop(call_id, None)
                    continue
                idle[call_id] = waited = idle.get(call_id, 0.0) + interval
                if waited >= idle_timeout:
                    self.stats.idle_timeouts += 1
                    log.warning("session %s: nothing received for %g s, hanging up", call_id, idle_timeout)
                    session.hangup("idle timeout")
            for call_id in [c for c in idle if c not in self.sessions]:
                del idle[call_id]
