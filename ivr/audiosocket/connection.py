"""One AudioSocket TCP connection: the UUID handshake, then every message into its session.

Split from :mod:`ivr.audiosocket.server` (which owns the listener, the sessions by UUID and the connection
limits) so the per-connection protocol, the per-frame read path included, reads on its own. The server
creates one :class:`_Connection` per accepted socket and is its :class:`ConnectionHost`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from typing import Protocol, cast

from ivr.audiosocket.config import AudioSocketConfig, ServerStats
from ivr.audiosocket.native import READ_PREFIX_MAX
from ivr.audiosocket.protocol import HANGUP_MESSAGE, HEADER_SIZE, Frame, FrameDecoder, ProtocolError, Uuid
from ivr.audiosocket.session import AudioSocketSession

log = logging.getLogger("ivr.audiosocket.server")  # the server's log lines keep their logger's name


class ConnectionHost(Protocol):
    """What a connection needs of the server that accepted it
    (:class:`~ivr.audiosocket.server.AudioSocketServer` is one)."""

    @property
    def config(self) -> AudioSocketConfig: ...

    @property
    def stats(self) -> ServerStats: ...

    @property
    def read_buffer(self) -> bytearray:
        """The one buffer every connection reads into (nothing keeps a view of it past a callback)."""

    @property
    def read_view(self) -> memoryview: ...

    def admit(self, conn: _Connection) -> str | None:
        """Count ``conn`` in; why it is over a limit (it is refused then), or None."""

    def release(self, conn: _Connection) -> None:
        """Count ``conn`` out (idempotent)."""

    def open_session(self, conn: _Connection, call_id: uuid.UUID) -> AudioSocketSession | None:
        """The session for the UUID ``conn`` announced; None: refused (duplicate, unexpected)."""

    def forget(self, session: AudioSocketSession) -> None:
        """The call is over: its UUID may come again."""


class _Connection(asyncio.BufferedProtocol):
    """One TCP connection: UUID handshake, then frames into its session."""

    def __init__(self, server: ConnectionHost) -> None:
        self.server = server
        cfg = server.config
        self.decoder = FrameDecoder(cfg.max_payload)
        self._buffer = server.read_buffer
        self._view = server.read_view
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
        refusal = server.admit(self)
        if refusal is not None:
            self._refuse(refusal)
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
        """From here on the pacer's thread reads this socket, taking over any partial message read here.

        Why at once, partial message or not: a loop that falls behind reads big chunks that end in the
        middle of a message read after read; waiting for a read that ends on a boundary left such calls on
        this slower path for good, under exactly the load where it costs the most."""
        session = self.session
        native = session.native if session is not None else None
        if self._done or native is None:
            self._hand_over = False
            return
        if self.decoder.buffered > READ_PREFIX_MAX:
            return  # the start of a message too big for the thread's buffer: complete it here first
        self._hand_over = False
        self.transport.pause_reading()
        self._native_reading = True
        native.pacer.read(native, self, self.decoder.take_buffered())

    # -- the native thread's reads (ivr.audiosocket.native.NativeReader) --

    def native_audio(self, payload: bytes, level: float) -> None:
        session = self.session
        if not self._done and session is not None:
            self.decoder.skip(HEADER_SIZE + len(payload))  # the stream offset stays true for error lines
            session.on_audio_payload(payload, level)

    def native_raw(self, data: bytes) -> None:
        if not self._done:
            session = self.session
            routed = session.take_routed_bytes() if session is not None else 0
            if routed:  # audio routed past us came first
                self.decoder.skip(routed)
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
            self.session = self.server.open_session(self, frame.uuid)
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
            self.server.forget(self.session)  # the call is over; only the socket lingers
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
        self.server.release(self)
        session = self.session
        pending = self.decoder.buffered
        if pending and reading:  # a message cut short, by a close or a reset alike: the peer's fault
            log.warning(
                "AudioSocket %s (%s): %s in the middle of a message (%d bytes of it received)",
                self.peer,
                self._name(),
                "closed" if exc is None else f"connection lost ({exc})",
                pending,
            )
        if session is not None:
            reason = "peer closed the connection" if exc is None else f"connection lost: {exc}"
            session.connection_lost(reason)
            self.server.forget(session)
