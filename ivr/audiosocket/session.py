"""One AudioSocket call: inbound events, paced outbound audio, and a clean close.

The session only ever sends audio and hangup messages: a real Asterisk hangs the call up when it
receives a UUID, DTMF, error or zero-length message (``shared/notes/asterisk-wire.md``).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Literal

from ivr.audiosocket.clock import FrameClock
from ivr.audiosocket.native import NativePacer, NativePlayback, NativePlayer
from ivr.audiosocket.player import Playback, Player
from ivr.audiosocket.protocol import (
    HANGUP_MESSAGE,
    HEADER_SIZE,
    RATE_KINDS,
    Audio,
    Dtmf,
    Error,
    Frame,
    Hangup,
    Kind,
    Unknown,
    Uuid,
    frame_bytes,
)
from ivr.transport import (
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
)

log = logging.getLogger(__name__)

SessionMode = Literal["expected", "accepted"]


class AudioSocketSession:
    """A live AudioSocket connection, known by the UUID it announced: an :class:`ivr.transport.MediaTransport`.

    Iterate it (``async for event in session``) for :class:`~ivr.transport.AudioIn`,
    :class:`~ivr.transport.DigitIn` and :class:`~ivr.transport.PeerHangup` events, ending with one
    :class:`~ivr.transport.MediaClosed` (or hand audio to a sink with :meth:`on_audio`). Play prompts with
    :meth:`play`; the player sends silence whenever nothing plays, from the moment the session opens.
    """

    def __init__(
        self,
        call_id: uuid.UUID,
        *,
        transport: asyncio.Transport,
        rate: int,
        mode: SessionMode,
        frame_clock: FrameClock,
        inbound_max_frames: int,
        prebuffer_ms: int,
        peer: str,
        close_transport: Callable[[], None] | None = None,
        pacer: NativePacer | None = None,
    ) -> None:
        self.uuid = call_id
        self.mode: SessionMode = mode
        self.peer = peer
        self._transport = transport
        self._close_transport = close_transport or transport.close
        self._frame_clock = frame_clock
        self.inbound = InboundQueue(inbound_max_frames)
        self.player: Player | NativePlayer
        self._native: NativePlayer | None = None
        if pacer is not None:
            sock = transport.get_extra_info("socket")
            self.player = self._native = pacer.player(sock.fileno(), rate, prebuffer_ms=prebuffer_ms)
        else:
            self.player = Player(self._write, rate, frame_clock.clock, prebuffer_ms=prebuffer_ms)
        self._pacing = True
        self._frames_counted = 0
        """Frames that came through here (the routed ones are counted by the native drain)."""
        self._swept_at = 0
        self.close_reason: str | None = None
        self._closed = asyncio.get_running_loop().create_future()
        self._expected_size = frame_bytes(rate)
        self._warned_size = False
        self._warned_rate = False
        self._warned_kinds: set[int] = set()
        self._rate_locked = mode == "expected"
        self._rate_known: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.audio_kind = -1
        """The kind byte of the audio messages expected now (-1: rate not settled); see :meth:`on_audio_payload`."""
        self.audio_message = 0
        """Their whole size on the wire, header included."""
        if self._rate_locked:
            self._rate_known.set_result(rate)
            self._expect_audio(rate)
        if self._native is None:
            frame_clock.add(self.player)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"<AudioSocketSession {self.uuid} {self.mode} {self.rate} Hz from {self.peer}>"

    @property
    def rate(self) -> int:
        return self.player.rate

    @property
    def closed(self) -> bool:
        return self._closed.done()

    @property
    def dropped_audio(self) -> int:
        native = self._native
        return self.inbound.dropped_audio + (native.inbound_dropped if native is not None else 0)

    def media_stats(self) -> MediaStats:
        """What this call's media counted (read at the call's end): the app paces, so lateness too."""
        player = self.player
        return MediaStats(
            "audiosocket", self.dropped_audio, player.dropped_frames, player.lateness,
            preroll_discarded=self.inbound.preroll_discarded,
        )  # fmt: skip

    def __aiter__(self) -> AsyncIterator[InboundEvent]:
        return self.events()

    def events(self) -> AsyncIterator[InboundEvent]:
        return self.inbound.events()

    def on_audio(self, sink: AudioSink | None) -> None:
        self.inbound.sink = sink
        self._route()

    def on_measured_audio(self, sink: MeasuredSink | None) -> None:
        self.inbound.measured = sink
        self._route()

    def _route(self) -> None:
        """While the consumer takes measured frames at once (both sinks set, not closed), the native drain
        hands the thread's audio messages to that sink directly, as the connection's ``native_audio`` ->
        :meth:`on_audio_payload` -> ``put_audio`` would have, and counts them itself."""
        native = self._native
        if native is not None:
            native.route(self.inbound.measured_route)

    @property
    def frames_received(self) -> int:
        native = self._native
        return self._frames_counted + (native.routed_frames if native is not None else 0)

    def received_since_sweep(self) -> bool:
        """Something came since the idle sweep last asked (each call starts a new interval)."""
        received = self.frames_received
        came = received != self._swept_at
        self._swept_at = received
        return came

    def take_routed_bytes(self) -> int:
        """Wire bytes of audio messages routed past the connection's decoder since it last asked."""
        native = self._native
        return native.take_routed_bytes() if native is not None else 0

    @property
    def rate_known(self) -> bool:
        """True once the rate is settled: at once for expected sessions, else at the first audio frame."""
        return self._rate_known.done()

    async def wait_rate(self, timeout: float) -> int | None:
        """The rate the peer sends at, once known; ``None`` if no audio came within ``timeout`` or the
        session closed first (then :meth:`settle_rate` keeps the current rate).

        Accepted sessions (dialplan ``AudioSocket()`` / ``Dial(AudioSocket/...)``) only learn their rate
        from the first audio message, so nothing rate-dependent (prompts, endpointing) may start before.
        """
        if self._rate_known.done():
            return self._rate_known.result()
        closed = asyncio.ensure_future(asyncio.shield(self._closed))
        try:
            await asyncio.wait(
                {self._rate_known, closed}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            closed.cancel()
        return self._rate_known.result() if self._rate_known.done() else None

    def settle_rate(self) -> int:
        """Keep the current rate from now on (the fallback when no audio told it)."""
        self._rate_locked = True
        if not self._rate_known.done():
            self._rate_known.set_result(self.rate)
            self._expect_audio(self.rate)
        return self.rate

    def play(self, source: PcmSource, *, prebuffer_ms: int | None = None) -> Playback | NativePlayback:
        """Queue PCM at the session rate (see :attr:`rate`); resample upstream if needed.

        On a closed session this returns a playback that is already stopped (no frame is written): a
        caller hanging up just as a prompt starts is an ordinary race, never an error.
        """
        if self.closed:
            playback = self.player.play(b"", prebuffer_ms=prebuffer_ms)
            playback.stop()
            self.player.stop_all()
            return playback
        return self.player.play(source, prebuffer_ms=prebuffer_ms)

    def clear(self) -> int:
        return self.player.stop_all()

    def pause(self) -> bool:
        return False if self.closed else self.player.hold()

    def resume(self) -> None:
        self.player.release()

    def on_played(self, tap: PlayedTap | None) -> None:
        self.player.tap = tap

    def hangup(self, reason: str = "hangup by application") -> None:
        """Send a hangup message, then close; Asterisk hangs the media channel up within ms.

        The session ends at once; the connection closes gracefully behind it (FIN after the hangup
        message, the peer's last frames read and dropped, then close) so Asterisk never sees a reset.
        """
        if self.closed:
            return
        self.stop_pacing()  # first: nothing else may write to the socket while the pacer does
        if not self._transport.is_closing():
            self._transport.write(HANGUP_MESSAGE)
        self._close(reason)
        self._close_transport()

    async def wait_closed(self) -> str:
        return await asyncio.shield(self._closed)

    # -- called by the connection -------------------------------------------------------------

    def stop_pacing(self) -> None:
        """No frame is written from now on (the session ends soon): first on hangup, so nothing else writes
        while the pacer does, and before the socket may close."""
        if not self._pacing:
            return
        self._pacing = False
        native = self._native
        if native is None:
            self._frame_clock.remove(self.player)  # type: ignore[arg-type]
            return
        rest = native.close()
        if rest and not self._transport.is_closing():
            self._transport.write(rest)  # the rest of a message the pacer had half written

    def _write(self, message: bytes) -> None:
        transport = self._transport
        if not transport.is_closing():
            transport.write(message)

    def _expect_audio(self, rate: int) -> None:
        self.audio_kind = RATE_KINDS[rate]
        self.audio_message = HEADER_SIZE + frame_bytes(rate)
        if self._native is not None:
            self._native.expect_input(self.audio_kind, frame_bytes(rate))

    @property
    def native(self) -> NativePlayer | None:
        """The native pacer's player when the thread paces (and reads) this session."""
        return self._native

    def on_audio_payload(self, payload: bytes, level: float | None = None) -> None:
        """One 20 ms audio message of the settled rate, parsed by the connection's fast path (the usual
        message: no frame object, no checks left to make); ``level``: measured by the native thread."""
        self._frames_counted += 1
        self.inbound.put_audio(self.player.rate, payload, level)

    def on_frame(self, frame: Frame) -> None:
        self._frames_counted += 1
        if type(frame) is Audio:
            payload = frame.payload
            if not payload:
                return
            if frame.rate != self.player.rate:
                self._on_rate(frame.rate)
            elif not self._rate_known.done():
                self._rate_locked = True
                self._rate_known.set_result(frame.rate)
                self._expect_audio(frame.rate)
            if len(payload) != self._expected_size and not self._warned_size:
                self._warned_size = True
                log.warning(
                    "session %s from %s: %d-byte audio message at %d Hz, expected %d (20 ms); if the channel "
                    "is G.711, force linear audio (externalMedia format=slin16, or c(slin16) in Dial)",
                    self.uuid,
                    self.peer,
                    len(payload),
                    frame.rate,
                    self._expected_size,
                )
            self.inbound.put_audio(frame.rate, bytes(payload))
        elif type(frame) is Dtmf:
            self.inbound.put(DigitIn(frame.digit))
        elif type(frame) is Error:
            if Kind.ERROR not in self._warned_kinds:  # Asterisk 22 never sends one; say it once
                self._warned_kinds.add(Kind.ERROR)
                log.warning(
                    "session %s from %s: the peer reported an error (%s)", self.uuid, self.peer, frame
                )
        elif type(frame) is Hangup:
            self.inbound.put(PeerHangup("peer sent hangup"))
            self._close("peer sent hangup")
            self._close_transport()
        elif type(frame) is Unknown:
            if frame.kind not in self._warned_kinds:
                self._warned_kinds.add(frame.kind)
                log.warning(
                    "session %s from %s: ignoring unknown message kind 0x%02x",
                    self.uuid,
                    self.peer,
                    frame.kind,
                )
        elif type(frame) is Uuid and Kind.UUID not in self._warned_kinds:
            # A second UUID on a live connection is meaningless; ignore it like an unknown kind.
            self._warned_kinds.add(Kind.UUID)
            log.warning("session %s from %s: ignoring a repeated UUID message", self.uuid, self.peer)

    def _on_rate(self, rate: int) -> None:
        if self._rate_locked:
            if not self._warned_rate:
                self._warned_rate = True
                log.warning(
                    "session %s from %s: audio at %d Hz but %d Hz was asked for; check the externalMedia format",
                    self.uuid,
                    self.peer,
                    rate,
                    self.player.rate,
                )
            return
        # Accept mode assumes 8 kHz (AudioSocket() app) until the first audio shows otherwise.
        self._rate_locked = True
        log.info("session %s: peer sends %d Hz audio, switching from %d Hz", self.uuid, rate, self.rate)
        self.player.set_rate(rate)
        self._expected_size = frame_bytes(rate)
        self._expect_audio(rate)
        if not self._rate_known.done():
            self._rate_known.set_result(rate)

    def _close(self, reason: str) -> None:
        if self._closed.done():
            return
        self.close_reason = reason
        self.stop_pacing()
        self.player.stop_all()
        self.inbound.put(MediaClosed(reason))
        self._route()
        self._closed.set_result(reason)

    def connection_lost(self, reason: str) -> None:
        self._close(reason)
