"""Outbound pacing on a native thread: the event loop hands prompts over and never paces a frame itself.

:class:`NativePacer` wraps ``ivr.audiosocket._pacer`` (C, built with the package where a compiler is
there): one thread per process that writes every session's 20 ms messages at their deadlines on its own
clock, so a busy event loop (a garbage collection, a slow callback, hundreds of calls' inbound audio)
delays no caller's audio. :class:`NativePlayer` and :class:`NativePlayback` have the interface of
:class:`~ivr.audiosocket.player.Player` and :class:`~ivr.audiosocket.player.Playback`, so a session
uses either the same way: a prompt's bytes go to the thread by reference (no copy), a stream's chunks as
they come; the thread reports when each prompt starts and ends through an eventfd the loop watches, and
the levels of what it played, which go to the echo check before the caller frames read with them.

The same thread reads the sockets it paces, once a session is set up (:meth:`NativePacer.read`): it cuts
the usual 20 ms audio messages out itself and hands everything read to the loop in one drain per wake-up
(:class:`NativeReader`), so the loop runs one callback for all the calls' audio instead of one per read.

Without the module (no compiler at install, not Linux) or with ``IVR_PACER=loop`` the server paces on
the loop's :class:`~ivr.audiosocket.clock.FrameClock` as before.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterable, Callable
from types import ModuleType
from typing import Protocol

from ivr.audiosocket.player import PlayoutRecord, _aclose
from ivr.audiosocket.protocol import RATE_KINDS, frame_bytes
from ivr.audiosocket.stats import LatencyHistogram
from ivr.transport import PcmSource, PlayedTap, PlayoutResult, PlayoutState

log = logging.getLogger(__name__)

_pacer: ModuleType | None
try:
    from ivr.audiosocket import _pacer  # type: ignore[attr-defined,no-redef]
except ImportError:  # not built here: the loop paces
    _pacer = None

_NS = 1e-9
READ_PREFIX_MAX: int = _pacer.READ_BUFFER if _pacer is not None else 0
"""The most of a partial message the thread can take over with a socket (a bigger one stays on the loop)."""
_AUDIO: int = _pacer.AUDIO if _pacer is not None else 0
_RAW: int = _pacer.RAW if _pacer is not None else 1
_SPACE_POLL = 0.1
"""Seconds between looks at a stream's unplayed audio while its producer waits for room (a stream is
read at most ``max_ahead`` ahead; the room opens at real-time speed, so a coarse look is enough)."""


def native_available() -> bool:
    return _pacer is not None


def realtime_loop(loop: asyncio.AbstractEventLoop) -> bool:
    """True when ``loop.time()`` is the system's monotonic clock (asyncio's and uvloop's loops), which the
    native thread's deadlines are on; a virtual-time loop (``ivr test``, tests) paces on the loop."""
    return type(loop).time is asyncio.BaseEventLoop.time or type(loop).__module__.startswith("uvloop")


TELL_MS = 5.0
"""How often at most the pacing thread wakes the event loop for a drain. Told as soon as anything came,
the loop of a process with 300 calls drained ~1,000 times a second, a few frames each, and was switched
out ~6,700 times a second; held back this long, a caller frame or a playback's end reaches the loop at
most 5 ms later (a barge-in, a DTMF key, the end of a turn), which no caller hears."""


class NativeReader(Protocol):
    """Who gets a session's inbound bytes once the thread reads its socket (the AudioSocket connection)."""

    def native_audio(self, payload: bytes, level: float) -> None:
        """One usual audio message's payload (the kind and size given by ``NativePlayer.expect_input``)
        and its level in dBFS, measured by the thread."""

    def native_raw(self, data: bytes) -> None:
        """Any other bytes, whole messages (or the raw stream after a message too big to hold)."""

    def native_closed(self, err: int) -> None:
        """The peer closed (``err`` 0) or the socket failed (an errno); nothing more comes."""

    def native_name(self) -> str:
        """Who this is in a log line (the call's UUID)."""


class NativePacer:
    """The process's pacing thread; owned by the AudioSocket server, closed with it.

    ``realtime``: run the thread at this SCHED_FIFO priority when the process may (CAP_SYS_NICE); 0 (the
    default) keeps the usual scheduling. Meant for hosts where other work shares the cores (README: it
    measured worse with the process pinned to one CPU).
    ``inbound_max``: caller frames per session the thread holds for the loop between two drains; when the
    loop falls further behind, the newest are dropped and counted (``NativePlayer.inbound_dropped``), as the
    session's inbound queue drops its oldest.
    ``tell_ms``: the thread wakes the loop at most once per this long (what comes meanwhile is drained
    together, at most that much later), see :data:`TELL_MS`.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        realtime: int = 0,
        inbound_max: int = 50,
        tell_ms: float = TELL_MS,
    ) -> None:
        if _pacer is None:
            raise RuntimeError(
                "the native pacer (ivr.audiosocket._pacer) is not built: reinstall with a C compiler "
                "(apt-get install gcc python3-dev), or set IVR_PACER=loop"
            )
        self._loop = loop
        self.c = _pacer.Pacer(realtime=realtime, inbound_max=inbound_max, tell_ms=tell_ms)
        self._players: dict[int, NativePlayer] = {}
        self._readers: dict[int, NativeReader] = {}
        self._lost: dict[int, int] = {}
        """Caller frames each session's handler failed on (logged once with its traceback, counted after)."""
        self._fd: int = self.c.fileno()
        loop.add_reader(self._fd, self._drain)
        self.closed = False

    def player(self, fd: int, rate: int, *, prebuffer_ms: int = 60, max_ahead_ms: int = 5000) -> NativePlayer:
        player = NativePlayer(self, fd, rate, prebuffer_ms=prebuffer_ms, max_ahead_ms=max_ahead_ms)
        self._players[player.sid] = player
        return player

    def forget(self, player: NativePlayer) -> None:
        self._report_lost(player.sid)
        self._players.pop(player.sid, None)
        self._readers.pop(player.sid, None)

    def read(self, player: NativePlayer, reader: NativeReader, prefix: bytes = b"") -> None:
        """Read ``player``'s socket on the thread from now on, for ``reader``. The loop must have stopped
        reading it (``transport.pause_reading()``); ``prefix``: the start of a message its decoder had
        (at most :data:`READ_PREFIX_MAX` bytes), which the thread completes with its first read."""
        self._readers[player.sid] = reader
        self.c.watch(player.sid, prefix)

    def route(self, sid: int, audio: Callable[[bytes, float], None] | None) -> None:
        """Hand ``sid``'s audio messages (payload, level) to ``audio`` straight from the drain (the C side
        calls it), or (None) through its reader again. Why: a Python loop over the drain cost the loop's
        thread ~0.4 us a frame more (0.59-0.69 against 0.24-0.29 us in a harness of 500 sessions), about
        2 % of a core at 50,000 frames a second; the session routes only while its consumer takes them. The thread counts what it routed
        (:meth:`NativePlayer.routed_frames`)."""
        if audio is None or sid in self._players:
            self.c.route(sid, audio)

    def clock_stats(self) -> tuple[LatencyHistogram, int, int, bool]:
        """(how late the thread woke against its slots, wake-ups, periods skipped, real-time priority)."""
        bins, wakeups, skipped, _live, realtime, _reads, _frames_in = self.c.clock_stats()
        return _histogram(bins, wakeups, None, None), int(wakeups), int(skipped), bool(realtime)

    def trim(self) -> int:
        """Give back what a burst made the inbound buffers grow; returns the bytes freed. Why: a loop that
        fell behind lets up to ``inbound_max`` frames per call pile up between drains (16 MB at 400 calls
        at 16 kHz), and the thread's double buffers kept that size for good (ivr bench: 20 MB after a wave
        of calls had ended). Keeps twice the largest drain since the last trim while sessions are open."""
        return 0 if self.closed else int(self.c.trim())

    def _drain(self) -> None:
        assert _pacer is not None
        c = self.c
        events, played = c.drain()
        players = self._players
        for kind, sid, pid, frames, underruns, at_ns, err in events:
            player = players.get(sid)
            if player is not None:
                player._event(kind, pid, frames, underruns, at_ns, err)
        for sid, at_ns, level in played:  # before the caller frames read with them (the echo reference)
            player = players.get(sid)
            tap = player._tap if player is not None else None
            if tap is not None:
                tap.played_db(level, at_ns * _NS)
        # the frames of routed sessions go to their handlers from C, the rest here, all in the order read
        c.deliver(self._unrouted, self._failed)

    def _unrouted(self, sid: int, kind: int, data: bytes | int, level: float) -> None:
        """What the thread read for a session with no route now: a frame, any other message, the end."""
        reader = self._readers.get(sid)
        if reader is None:
            return
        try:
            if kind == _AUDIO:
                reader.native_audio(data, level)  # type: ignore[arg-type]
            elif kind == _RAW:
                reader.native_raw(data)  # type: ignore[arg-type]
            else:
                self._report_lost(sid)
                self._readers.pop(sid, None)
                self.route(sid, None)
                reader.native_closed(data)  # type: ignore[arg-type]
        except Exception as exc:  # one session's handler costs its own frame, never the others' of the drain
            self._failed(sid, exc)

    def _failed(self, sid: int, exc: BaseException) -> None:
        """One traceback per session, not one per frame (a broken handler fails 50 times a second)."""
        lost = self._lost.get(sid, 0) + 1
        self._lost[sid] = lost
        if lost == 1:
            log.error(
                "AudioSocket %s: a caller frame's handler failed (that frame is lost; later failures of "
                "this session are counted, not logged)",
                self._name(sid),
                exc_info=exc,
            )

    def _report_lost(self, sid: int) -> None:
        lost = self._lost.pop(sid, 0)
        if lost > 1:
            log.warning("AudioSocket %s: %d caller frames lost to handler errors", self._name(sid), lost)

    def _name(self, sid: int) -> str:
        reader = self._readers.get(sid)
        return reader.native_name() if reader is not None else f"session {sid}"

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._loop.remove_reader(self._fd)
        for player in list(self._players.values()):
            player.close()
        self.c.close()


def _histogram(bins: list[int], count: int, total: float | None, maximum: float | None) -> LatencyHistogram:
    """The thread's bins as a histogram; where it kept no sum or maximum (its wake-ups), from the bins."""
    width = 0.0001
    used = [i for i, n in enumerate(bins) if n]
    if maximum is None:
        maximum = (used[-1] + 1) * width if used else 0.0
    if total is None:
        total = sum(n * (i + 0.5) * width for i, n in enumerate(bins))
    return LatencyHistogram.from_bins(bins, count, total, maximum)


class NativePlayback(PlayoutRecord):
    """One prompt on the native thread (an :class:`ivr.transport.Playout`); "written" is "played", as for
    the loop's player. ``stop()`` acts before the next frame: the thread takes no frame of it after."""

    __slots__ = ("_player", "_source", "pid")

    def __init__(
        self, player: NativePlayer, pid: int, source: PcmSource, prebuffer: int, max_ahead: int
    ) -> None:
        super().__init__()
        loop = asyncio.get_running_loop()
        self._player = player
        self.pid = pid
        self._source: bytes | None = None
        c, sid = player.pacer.c, player.sid
        if not c.play(sid, pid, prebuffer):
            self._finish(PlayoutState.CLEARED, 0, 0)
            return
        if isinstance(source, bytes | bytearray | memoryview):
            data = source if isinstance(source, bytes) else bytes(source)
            self._source = data or None
            c.append(sid, pid, data, True)
        else:
            self._producer = loop.create_task(self._produce(source, max_ahead), name="ivr-playback-producer")

    @property
    def source(self) -> bytes | None:
        """The bytes this prompt plays (the very object it was given), or None once it is over."""
        return None if self._done.done() else self._source

    def stop(self) -> None:
        if self._done.done():
            return
        player = self._player
        for _pid, frames, underruns, first_ns in player.pacer.c.stop(player.sid, self.pid):
            self._started(first_ns)
            self._finish(PlayoutState.CLEARED, frames, underruns)
        self._finish(PlayoutState.CLEARED, self.frames, self.underruns)  # already gone from the thread

    async def _produce(self, source: AsyncIterable[bytes], max_ahead: int) -> None:
        c, sid, pid = self._player.pacer.c, self._player.sid, self.pid

        async def put(chunk: bytes) -> bool:
            if not c.append(sid, pid, chunk):
                return False  # stopped meanwhile
            # the room opens at the thread's pace and no event says so: a coarse look suffices
            while c.queued(sid, pid) >= max_ahead and not self._done.done():  # noqa: ASYNC110
                await asyncio.sleep(_SPACE_POLL)
            return True

        try:
            await self._read(source, put)
        finally:
            if not self._done.done():
                c.append(sid, pid, b"", True)
            else:
                await _aclose(source)

    def _started(self, first_ns: int) -> None:
        if first_ns and self.first_frame_at is None:
            self.first_frame_at = first_ns * _NS
            if self.state is PlayoutState.QUEUED:
                self.state = PlayoutState.PLAYING

    def _finish(self, state: PlayoutState, frames: int, underruns: int) -> None:
        if self._done.done():
            return
        if state is PlayoutState.COMPLETED and self._error is not None:
            state = PlayoutState.FAILED
        self.state = state
        self.frames = int(frames)
        self.underruns = int(underruns)
        self._source = None
        self._done.set_result(PlayoutResult(state, self.frames, self.underruns, self._error))
        self._player._playbacks.pop(self.pid, None)
        producer = self._producer
        if producer is not None and not producer.done() and producer is not asyncio.current_task():
            producer.cancel()


class NativePlayer:
    """Paced output of one session on the native thread (the interface of ``Player``)."""

    def __init__(
        self, pacer: NativePacer, fd: int, rate: int, *, prebuffer_ms: int, max_ahead_ms: int
    ) -> None:
        self.pacer = pacer
        self.prebuffer_ms = prebuffer_ms
        self.max_ahead_ms = max_ahead_ms
        self.paused = False
        """Kept for the interface: the thread writes to the socket itself and counts what would block."""
        self.held = False
        self._tap: PlayedTap | None = None
        self._playbacks: dict[int, NativePlayback] = {}
        self._next_pid = 1
        self.rate = rate
        self.frame_size = frame_bytes(rate)
        self.sid: int = pacer.c.open(fd, self.frame_size, RATE_KINDS[rate])
        self._closed = False
        self._final: tuple[int, int, int, int, int, list[int], int, float, float, int] | None = None
        self._routed_final = 0

    def route(self, audio: Callable[[bytes, float], None] | None) -> None:
        """See :meth:`NativePacer.route` (which routes nothing for a player it has forgotten: closed)."""
        self.pacer.route(self.sid, audio)

    @property
    def routed_frames(self) -> int:
        """Caller frames the drain handed straight to this session's route so far."""
        if self._closed:
            return self._routed_final
        return int(self.pacer.c.routed(self.sid)[0])

    def take_routed_bytes(self) -> int:
        """Wire bytes of the frames routed since the last call (they went past the connection's decoder)."""
        if self._closed:
            return 0
        return int(self.pacer.c.routed(self.sid, True)[1])

    def set_rate(self, rate: int) -> None:
        self.rate = rate
        self.frame_size = frame_bytes(rate)
        if not self._closed:
            self.pacer.c.set_format(self.sid, self.frame_size, RATE_KINDS[rate])

    @property
    def is_playing(self) -> bool:
        return any(not p.done for p in self._playbacks.values())

    def play(self, source: PcmSource, *, prebuffer_ms: int | None = None) -> NativePlayback:
        pre = self.prebuffer_ms if prebuffer_ms is None else prebuffer_ms
        pid, self._next_pid = self._next_pid, self._next_pid + 1
        playback = NativePlayback(
            self,
            pid,
            source,
            max(self.frame_size, frame_bytes(self.rate, pre)),
            max(2 * self.frame_size, frame_bytes(self.rate, self.max_ahead_ms)),
        )
        if not playback.done:
            self._playbacks[pid] = playback
        return playback

    def hold(self) -> bool:
        if not self.is_playing:
            return False
        self.held = True
        self.pacer.c.hold(self.sid, True)
        return True

    def release(self) -> None:
        self.held = False
        if not self._closed:
            self.pacer.c.hold(self.sid, False)

    def stop_all(self) -> int:
        self.held = False
        live = [p for p in self._playbacks.values() if not p.done]
        if not self._closed:
            for pid, frames, underruns, first_ns in self.pacer.c.stop(self.sid):
                playback = self._playbacks.get(pid)
                if playback is not None:
                    playback._started(first_ns)
                    playback._finish(PlayoutState.CLEARED, frames, underruns)
        for playback in live:
            playback._finish(PlayoutState.CLEARED, playback.frames, playback.underruns)
        return len(live)

    @property
    def tap(self) -> PlayedTap | None:
        return self._tap

    @tap.setter
    def tap(self, tap: PlayedTap | None) -> None:
        self._tap = tap
        if not self._closed:
            self.pacer.c.tap(self.sid, tap is not None)

    def expect_input(self, kind: int, size: int) -> None:
        """The usual inbound message once the rate is settled: the thread cuts these out as audio."""
        if not self._closed:
            self.pacer.c.expect(self.sid, kind, size)

    def _event(self, kind: int, pid: int, frames: int, underruns: int, at_ns: int, err: int) -> None:
        assert _pacer is not None
        if kind == _pacer.ERROR:
            log.debug("native pacer: write to session %#x failed: %s", self.sid, os.strerror(err))
            return
        playback = self._playbacks.get(pid)
        if playback is None:
            return
        if kind == _pacer.STARTED:
            playback._started(at_ns)
        elif kind == _pacer.DONE:
            playback._finish(PlayoutState.COMPLETED, frames, underruns)

    def close(self) -> bytes:
        """Off the clock; every prompt ends (cleared). Returns the unsent rest of a message, which must go
        out before anything else is written to the socket (empty when the last message went out whole)."""
        if self._closed:
            return b""
        self.stop_all()
        self._final = self.pacer.c.stats(self.sid)
        self._routed_final = int(self.pacer.c.routed(self.sid)[0])
        self._closed = True
        rest = self.pacer.c.close_session(self.sid)
        self.pacer.forget(self)
        return rest or b""

    def _stats(self) -> tuple[int, int, int, int, int, list[int], int, float, float, int]:
        if self._final is not None:
            return self._final
        stats = self.pacer.c.stats(self.sid)
        return stats if stats is not None else (0, 0, 0, 0, 0, [], 0, 0.0, 0.0, 0)

    @property
    def lateness(self) -> LatencyHistogram:
        """How late each frame was written against its deadline (read at the call's end)."""
        _sent, _audio, _dropped, _first, _last, bins, count, total, maximum, _in = self._stats()
        return _histogram(bins, count, total, maximum)

    @property
    def inbound_dropped(self) -> int:
        """Caller frames the thread dropped because the loop fell behind by more than ``inbound_max``."""
        return int(self._stats()[9])

    @property
    def frames_sent(self) -> int:
        return int(self._stats()[0])

    @property
    def audio_frames(self) -> int:
        return int(self._stats()[1])

    @property
    def dropped_frames(self) -> int:
        return int(self._stats()[2])

    @property
    def first_deadline(self) -> float | None:
        first = self._stats()[3]
        return first * _NS if first else None

    @property
    def last_deadline(self) -> float | None:
        last = self._stats()[4]
        return last * _NS if last else None
