"""The native pacing thread (ivr.audiosocket._pacer) over real sockets: what it writes, in what order, and
that it keeps writing while the event loop is blocked.

These run in real time because the thread does (it sleeps on CLOCK_MONOTONIC); they check content, order
and counters, never how fast anything went. The one test about the blocked loop asks for frames to keep
coming, with a wide margin.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import socket
import struct
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from ivr.audiosocket import Audio, AudioSocketConfig, AudioSocketServer, Hangup
from ivr.audiosocket.native import native_available
from ivr.audiosocket.protocol import FrameDecoder, encode_audio, encode_dtmf, encode_uuid
from ivr.media.vad import frame_levels
from ivr.transport import AudioIn, DigitIn, PlayoutState

from ..services import unavailable
from .peer import AsteriskPeer, open_call

HOW = "pip install -e . with gcc and the Python headers (apt-get install gcc python3-dev)"


@pytest.fixture(autouse=True)
def built() -> None:
    if not native_available():
        unavailable("native pacer (ivr.audiosocket._pacer)", HOW)


RATE = 16000
FRAME = 640


def numbered(frames: int, first: int = 1) -> bytes:
    """Frame k holds the sample value ``first + k`` everywhere: which frame played is readable."""
    n = FRAME // 2
    return b"".join(struct.pack("<h", first + k) * n for k in range(frames))


def source_of(playback: object) -> object:
    return getattr(playback, "source")  # noqa: B009 - read again after an earlier narrowing


def value(frame: Audio) -> int:
    return int(struct.unpack_from("<h", frame.payload)[0])


@pytest.fixture
async def server() -> AsyncIterator[AudioSocketServer]:
    srv = AudioSocketServer(AudioSocketConfig(port=0, pacer="native", prebuffer_ms=20))
    await srv.start()
    assert srv.pacing == "native"
    yield srv
    await srv.close()


async def read_until(
    peer: AsteriskPeer, done: asyncio.Future[Any], silent_after: int = 5, limit: int = 2000
) -> list[Audio]:
    """Frames until ``silent_after`` silent frames in a row once ``done`` (a Future) is done."""
    out: list[Audio] = []
    quiet = 0
    while len(out) < limit:
        (frame,) = await peer.read_frames(1, timeout=5)
        assert isinstance(frame, Audio), f"only audio before a hangup, got {frame!r}"
        assert frame.rate == RATE
        assert len(frame.payload) == FRAME
        out.append(frame)
        quiet = quiet + 1 if not any(frame.payload) else 0
        if done.done() and quiet >= silent_after:
            return out
    raise AssertionError("the prompt never ended")


async def test_a_prompt_is_written_whole_in_order_between_silences(server: AudioSocketServer) -> None:
    peer, session = await open_call(server)
    prompt = numbered(25)
    playback = session.play(prompt)
    assert playback.source is prompt, "the thread plays the prompt's own bytes: no per-call copy"
    done = asyncio.ensure_future(playback.wait())
    frames = await read_until(peer, done)
    result = done.result()
    values = [value(f) for f in frames if any(f.payload)]
    assert values == list(range(1, 26))
    assert result.state is PlayoutState.COMPLETED
    assert result.frames == 25
    assert playback.first_frame_at is not None
    assert source_of(playback) is None
    assert session.player.audio_frames == 25
    assert session.player.frames_sent >= len(frames)
    await peer.close()


async def test_the_thread_holds_a_reference_until_the_prompt_ends(server: AudioSocketServer) -> None:
    peer, session = await open_call(server)
    prompt = numbered(5, first=300)
    base = sys.getrefcount(prompt)
    playback = session.play(prompt)
    assert sys.getrefcount(prompt) > base
    await playback.wait()
    await peer.read_frames(10, timeout=5)
    await asyncio.sleep(0.05)  # the loop drains what the thread released
    assert sys.getrefcount(prompt) == base, "every reference the thread took is given back"
    await peer.close()


async def test_stop_takes_effect_before_the_next_frame(server: AudioSocketServer) -> None:
    peer, session = await open_call(server)
    playback = session.play(numbered(500))
    heard = 0
    while heard < 5:
        (frame,) = await peer.read_frames(1)
        assert isinstance(frame, Audio)
        heard += bool(any(frame.payload))
    assert session.clear() == 1
    result = await playback.wait()
    assert result.state is PlayoutState.CLEARED
    rest = await read_until(peer, playback._done, silent_after=10)
    prompt_frames = heard + sum(1 for f in rest if any(f.payload))
    assert prompt_frames == result.frames, "not one frame of the prompt after stop() returned"
    assert not any(any(f.payload) for f in rest[-10:])
    await peer.close()


async def test_hold_sends_silence_and_the_prompt_plays_on_from_the_same_frame(
    server: AudioSocketServer,
) -> None:
    peer, session = await open_call(server)
    playback = session.play(numbered(60))
    values: list[int] = []
    while len(values) < 10:
        (frame,) = await peer.read_frames(1)
        assert isinstance(frame, Audio)
        if any(frame.payload):
            values.append(value(frame))
    assert session.pause()
    silent = 0
    while silent < 5:  # frames already on their way still arrive; then only silence
        (frame,) = await peer.read_frames(1)
        assert isinstance(frame, Audio)
        if any(frame.payload):
            assert silent == 0, "no prompt frame between silences while held"
            values.append(value(frame))
        else:
            silent += 1
    session.resume()
    done = asyncio.ensure_future(playback.wait())
    values += [value(f) for f in await read_until(peer, done) if any(f.payload)]
    assert values == list(range(1, 61)), "nothing skipped, nothing repeated"
    await peer.close()


async def test_a_stream_in_odd_chunks_is_reframed_and_its_last_frame_padded(
    server: AudioSocketServer,
) -> None:
    peer, session = await open_call(server)
    pcm = numbered(12)[:-100]  # ends 50 samples short of a frame

    async def stream() -> AsyncIterator[bytes]:
        for i in range(0, len(pcm), 333):
            yield pcm[i : i + 333]
            await asyncio.sleep(0)

    playback = session.play(stream())
    done = asyncio.ensure_future(playback.wait())
    frames = [f for f in await read_until(peer, done) if any(f.payload)]
    got = b"".join(f.payload for f in frames)
    assert got[: len(pcm)] == pcm
    assert got[len(pcm) :] == bytes(FRAME - (len(pcm) % FRAME))
    assert done.result().frames == 12
    await peer.close()


async def test_a_broken_stream_plays_what_it_had_and_fails(server: AudioSocketServer) -> None:
    peer, session = await open_call(server)

    async def stream() -> AsyncIterator[bytes]:
        yield numbered(3)
        raise RuntimeError("TTS cut")

    playback = session.play(stream())
    done = asyncio.ensure_future(playback.wait())
    frames = [f for f in await read_until(peer, done) if any(f.payload)]
    assert [value(f) for f in frames] == [1, 2, 3]
    assert done.result().state is PlayoutState.FAILED
    assert isinstance(done.result().error, RuntimeError)
    await peer.close()


class Levels:
    def __init__(self) -> None:
        self.seen: list[tuple[float, float]] = []

    def played(self, frame: object, at: float) -> None:
        raise AssertionError("the native pacer tells levels, measured as it writes")

    def played_db(self, level_db: float, at: float) -> None:
        self.seen.append((level_db, at))

    def flushed(self, at: float) -> None: ...

    def held(self, at: float) -> None: ...

    def released(self, at: float) -> None: ...


async def test_the_tap_hears_each_frame_level_in_deadline_order(server: AudioSocketServer) -> None:
    peer, session = await open_call(server)
    tap = Levels()
    session.on_played(tap)
    n = FRAME // 2
    tone = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 400 * i / RATE))) for i in range(n * 10)
    )
    playback = session.play(tone)
    await playback.wait()
    for _ in range(20):  # the session hands the tap its levels before each caller frame
        await peer.send(b"\x12\x02\x80" + bytes(FRAME))
    await asyncio.sleep(0.1)
    await peer.send(b"\x12\x02\x80" + bytes(FRAME))
    await asyncio.sleep(0.05)
    loud = [lvl for lvl, _ in tap.seen if lvl > -50]
    expected = 10 * math.log10((8000**2 / 2) / 32768**2)
    assert len(loud) == 10
    assert all(abs(lvl - expected) < 0.5 for lvl in loud)
    assert min(lvl for lvl, _ in tap.seen) == -100.0, "silence is told as silence"
    times = [at for _, at in tap.seen]
    assert times == sorted(times)
    assert all(abs((b - a) - 0.02) < 1e-6 or b - a > 0.02 for a, b in itertools.pairwise(times))
    await peer.close()


async def test_hangup_leaves_the_message_stream_intact(server: AudioSocketServer) -> None:
    peer, session = await open_call(server)
    session.play(numbered(100))
    await peer.read_frames(5)
    session.hangup()
    frames = await peer.read_until_eof()
    assert isinstance(frames[-1], Hangup)
    assert all(isinstance(f, Audio) and len(f.payload) == FRAME for f in frames[:-1])


def test_a_peer_that_stops_reading_costs_frames_not_framing() -> None:
    """Send buffers fill: frames are dropped (counted), a partial write is finished first: every message
    the peer reads afterwards parses."""

    async def main() -> None:
        srv = AudioSocketServer(AudioSocketConfig(port=0, pacer="native"))
        await srv.start()
        try:
            call_id = uuid.uuid4()
            expectation = srv.expect(call_id, "slin16")
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", srv.port))
            sock.sendall(encode_uuid(call_id))
            session = await expectation.wait(2)
            server_side = session._transport.get_extra_info("socket")
            server_side.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            session.play(numbered(400))
            deadline = time.monotonic() + 5
            while session.player.dropped_frames < 20 and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            assert session.player.dropped_frames >= 20
            sock.setblocking(False)
            decoder = FrameDecoder(65535)
            got = 0
            end = time.monotonic() + 1.0
            while time.monotonic() < end:
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    await asyncio.sleep(0.01)
                    continue
                for frame in decoder.feed(data):  # raises on a message cut into by another
                    assert isinstance(frame, Audio)
                    assert len(frame.payload) == FRAME
                    got += 1
            assert got > 20
            session.hangup()
            sock.close()
        finally:
            await srv.close()

    asyncio.run(main())


async def test_frames_keep_coming_while_the_event_loop_is_blocked(server: AudioSocketServer) -> None:
    call_id = uuid.uuid4()
    expectation = server.expect(call_id, "slin16")
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(encode_uuid(call_id))
    session = await expectation.wait(2)
    arrivals: list[float] = []
    stop = threading.Event()

    def reader() -> None:
        decoder = FrameDecoder(65535)
        sock.settimeout(0.5)
        while not stop.is_set():
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            if not data:
                return
            now = time.monotonic()
            arrivals.extend(now for f in decoder.feed(data) if isinstance(f, Audio) and any(f.payload))

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    session.play(numbered(100))
    await asyncio.sleep(0.2)
    blocked_from = time.monotonic()
    time.sleep(0.6)  # noqa: ASYNC251 - the point: the loop does nothing for 30 frame periods
    blocked_to = time.monotonic()
    await asyncio.sleep(0.2)
    stop.set()
    during = [t for t in arrivals if blocked_from + 0.04 < t < blocked_to]
    assert len(during) >= 15, f"{len(during)} frames of ~28 arrived while the loop was blocked"
    session.hangup()
    thread.join(2)
    sock.close()


async def test_the_thread_reads_the_socket_once_the_session_is_set_up(server: AudioSocketServer) -> None:
    """Audio cut out by the thread, other messages to the decoder, in the order they were sent."""

    peer, session = await open_call(server)
    assert server.pacer is not None
    for k in range(30):
        await peer.send(encode_audio(struct.pack("<h", k + 1) * (FRAME // 2), RATE))
        if k == 14:
            await peer.send(encode_dtmf("5"))
    events = [await anext(aiter(session)) for _ in range(31)]
    got = [
        int(struct.unpack_from("<h", e.payload)[0]) if isinstance(e, AudioIn) else e
        for e in events
        if isinstance(e, AudioIn | DigitIn)
    ]
    assert got == [*range(1, 16), DigitIn("5"), *range(16, 31)]
    *_, frames_in = server.pacer.c.clock_stats()
    assert frames_in >= 29, "the thread, not the loop, cut the audio out"
    await peer.close()


async def test_the_thread_measures_each_caller_frame_as_the_endpointer_would(
    server: AudioSocketServer,
) -> None:
    """Frames the thread cut out reach the measured sink with the level ``frame_levels`` gives them (DC
    removed, digital silence at the floor); frames without a level still reach the plain sink."""

    peer, session = await open_call(server)
    plain: list[bytes] = []
    measured: list[tuple[bytes, float]] = []
    session.on_audio(plain.append)
    session.on_measured_audio(lambda payload, level: measured.append((payload, level)))
    n = FRAME // 2
    rng = np.random.default_rng(7)
    frames = [
        bytes(FRAME),  # digital silence
        struct.pack("<h", 1000) * n,  # pure DC: no power once DC is removed
        np.round(8000 * np.sin(np.arange(n) * 0.3)).astype("<i2").tobytes(),
        rng.integers(-32768, 32768, n).astype("<i2").tobytes(),  # full scale noise
        (np.round(30 * np.sin(np.arange(n) * 1.7)) + 500).astype("<i2").tobytes(),  # quiet, off-centre
    ]
    await asyncio.sleep(0.1)  # the loop hands the socket to the thread
    for frame in frames:
        await peer.send(encode_audio(frame, RATE))
    async with asyncio.timeout(5):
        while len(measured) + len(plain) < len(frames):  # noqa: ASYNC110 - sinks filled by the drain
            await asyncio.sleep(0.01)
    assert plain == []
    assert [payload for payload, _ in measured] == frames
    expected = frame_levels(frames, n)
    assert [level for _, level in measured] == pytest.approx(expected, abs=1e-9)
    assert expected[0] == expected[1] == -100.0
    await peer.close()


async def test_a_stalled_loop_costs_the_thread_bounded_memory_and_counted_drops(
    server: AudioSocketServer,
) -> None:
    """The thread holds at most 2 s of a caller's audio for a loop that does not drain (100 frames here);
    the session's queue then keeps its newest 50: everything else is counted as dropped."""

    call_id = uuid.uuid4()
    expectation = server.expect(call_id, "slin")
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(encode_uuid(call_id))
    session = await expectation.wait(2)
    session.on_audio(lambda payload: None)
    session.on_audio(None)  # a consumer that listened, then fell behind (not a call's pre-roll)
    await asyncio.sleep(0.1)  # the loop hands the socket to the thread
    burst = b"".join(encode_audio(i.to_bytes(2, "little") * 160, 8000) for i in range(300))
    sock.sendall(burst)
    time.sleep(0.5)  # noqa: ASYNC251 - the loop stalls; the thread reads all of it meanwhile
    await asyncio.sleep(0.2)
    events = []
    while (event := session.inbound.get_nowait()) is not None:
        events.append(event)
    audio = [int.from_bytes(e.payload[:2], "little") for e in events if isinstance(e, AudioIn)]
    assert audio == list(range(50, 100)), "the thread kept the first 100, the queue their newest 50"
    assert session.dropped_audio == 250
    session.hangup()
    sock.close()


async def send_numbered_to_the_thread(peer: AsteriskPeer, count: int, received: list[bytes]) -> None:
    """Frames 1..count (sample value k), once the thread reads the socket; back when ``received`` (filled
    by a sink on the drain) holds them all."""
    await asyncio.sleep(0.1)  # the loop hands the socket to the thread
    for k in range(count):
        await peer.send(encode_audio(struct.pack("<h", k + 1) * (FRAME // 2), RATE))
    async with asyncio.timeout(5):
        while len(received) < count:  # noqa: ASYNC110 - filled by the drain
            await asyncio.sleep(0.01)


async def test_a_handler_failing_on_every_frame_is_logged_once_and_counted_at_the_end(
    server: AudioSocketServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A call whose frame handler raises loses those frames, not the log: one traceback for the session,
    then one line with how many frames it lost when its socket closes."""

    peer, session = await open_call(server)
    seen: list[bytes] = []

    def broken(payload: bytes, level: float) -> None:
        seen.append(payload)
        raise RuntimeError("handler bug")

    session.on_audio(lambda payload: None)
    session.on_measured_audio(broken)
    await send_numbered_to_the_thread(peer, 20, seen)
    failures = [r for r in caplog.records if "handler failed" in r.getMessage()]
    assert len(failures) == 1
    assert failures[0].exc_info is not None
    assert str(session.uuid) in failures[0].getMessage(), "the call it happened on"
    await peer.close()
    async with asyncio.timeout(5):
        while not any("frames lost" in r.getMessage() for r in caplog.records):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    (summary,) = [r.getMessage() for r in caplog.records if "frames lost" in r.getMessage()]
    assert "20 caller frames lost" in summary
    assert str(session.uuid) in summary


async def test_frames_routed_straight_to_a_listening_call_keep_the_stream_offset_true(
    server: AudioSocketServer, caplog: pytest.LogCaptureFixture
) -> None:
    """While the call takes measured frames, the drain hands them to it directly (past the connection's
    decoder); a protocol error after them still names its true offset on the wire, and a closed session is
    routed no more."""

    peer, session = await open_call(server)
    assert server.pacer is not None
    measured: list[bytes] = []
    session.on_audio(lambda payload: None)
    session.on_measured_audio(lambda payload, level: measured.append(payload))
    native = session.native
    assert native is not None
    await send_numbered_to_the_thread(peer, 10, measured)
    assert native.routed_frames == 10, "all of them straight from the drain, none through the connection"
    assert session.frames_received == 10
    await peer.send(bytes([0x12, 0xFF, 0xFF]))  # a payload larger than any cap
    await session.wait_closed()
    uuid_message = 3 + 16
    assert f"offset={uuid_message + 10 * (3 + FRAME)})" in caplog.text
    assert server.pacer.c.routed(native.sid) == (0, 0), "the closed session's route is gone"
    assert session.frames_received == 10
    assert [int(struct.unpack_from("<h", p)[0]) for p in measured] == list(range(1, 11))


def _deliver_all(c: Any, fallback: Any, failed: Any, until: Any) -> None:
    """Drain and deliver until ``until()`` (the thread may read one write in several pieces)."""
    import select

    deadline = time.monotonic() + 5
    while not until() and time.monotonic() < deadline:
        select.select([c.fileno()], [], [], 0.05)
        c.drain()
        c.deliver(fallback, failed)


def test_the_drain_hands_routed_frames_and_the_rest_on_in_the_order_read() -> None:
    """The C side calls a session's route for each audio frame and the fallback for everything else, in the
    order the frames came off the socket (a key between two frames stays between them); a route that raises
    costs its own frame (reported with the exception) and the frames after it still arrive."""
    from ivr.audiosocket import _pacer  # type: ignore[attr-defined]

    c = _pacer.Pacer()
    ours, theirs = socket.socketpair()
    try:
        ours.setblocking(False)
        sid = c.open(ours.fileno(), FRAME, 0x12)
        c.expect(sid, 0x12, FRAME)
        assert c.watch(sid)
        seen: list[tuple[object, ...]] = []
        failures: list[tuple[int, BaseException]] = []

        def route(payload: bytes, level: float) -> None:
            n = int(struct.unpack_from("<h", payload)[0])
            if n == 2:
                raise ValueError("frame two")
            seen.append(("route", n))

        def fallback(s: int, kind: int, data: object, level: float) -> None:
            assert s == sid
            seen.append(("fallback", kind, data))

        c.route(sid, route)
        frames = [encode_audio(struct.pack("<h", k) * (FRAME // 2), RATE) for k in (1, 2, 3)]
        theirs.sendall(frames[0] + encode_dtmf("5") + frames[1] + frames[2])

        def failed(s: int, exc: BaseException) -> None:
            failures.append((s, exc))

        _deliver_all(c, fallback, failed, lambda: len(seen) >= 3)
        assert seen == [("route", 1), ("fallback", _pacer.RAW, encode_dtmf("5")), ("route", 3)]
        assert [(s, type(e), str(e)) for s, e in failures] == [(sid, ValueError, "frame two")]
        assert failures[0][1].__traceback__ is not None, "logged with where it failed"
        assert c.routed(sid) == (3, 3 * (3 + FRAME)), "the failed frame was routed too"
        assert c.routed(sid, True)[1] == 3 * (3 + FRAME)
        assert c.routed(sid) == (3, 0), "bytes are taken, frames are a running count"

        c.route(sid, None)  # unrouted again: the fallback takes the audio
        theirs.sendall(frames[2])
        _deliver_all(c, fallback, failed, lambda: len(seen) >= 4)
        assert seen[3] == ("fallback", _pacer.AUDIO, frames[2][3:])
        assert c.routed(sid)[0] == 3
        c.close_session(sid)
        assert c.routed(sid) == (0, 0)
    finally:
        c.close()
        ours.close()
        theirs.close()


async def test_a_socket_whose_reads_end_mid_message_is_still_handed_to_the_thread(
    server: AudioSocketServer,
) -> None:
    """A loop that falls behind reads big chunks that end in the middle of a message, read after read; the
    thread takes the socket over anyway, with the partial message, and every frame arrives whole, in order.
    (It used to wait for a read that ended on a message boundary: under load, the calls that never got one
    stayed on the loop's slow path, which made the loop fall further behind.)"""

    call_id = uuid.uuid4()
    expectation = server.expect(call_id, "slin16")
    peer = await AsteriskPeer.connect(server.port)
    stream = b"".join(encode_audio(struct.pack("<h", k + 1) * (FRAME // 2), RATE) for k in range(40))
    cut = (3 + FRAME) // 2
    await peer.send(encode_uuid(call_id) + stream[: 3 + FRAME + cut])  # the UUID, one frame and a half
    session = await expectation.wait(2)
    assert server.pacer is not None
    for k in range(1, 39):  # every write ends in the middle of a message
        await asyncio.sleep(0.005)
        await peer.send(stream[k * (3 + FRAME) + cut : (k + 1) * (3 + FRAME) + cut])
    await peer.send(stream[39 * (3 + FRAME) + cut :])
    events = [await anext(aiter(session)) for _ in range(40)]
    got = [int(struct.unpack_from("<h", e.payload)[0]) for e in events if isinstance(e, AudioIn)]
    assert got == list(range(1, 41))
    *_, frames_in = server.pacer.c.clock_stats()
    assert frames_in >= 38, "the thread, not the loop, cut the audio out"
    await peer.close()


def _trickle(tell_ms: float, frames: int = 150) -> tuple[list[int], int, float]:
    """Frames sent one by one, 1 ms apart, to a routed session of a pacer with ``tell_ms``: (the frame
    numbers the route got, how often the loop was woken, seconds from the first send to the last frame)."""
    import select

    from ivr.audiosocket import _pacer  # type: ignore[attr-defined]

    c = _pacer.Pacer(tell_ms=tell_ms)
    ours, theirs = socket.socketpair()
    seen: list[int] = []
    wakes = 0
    try:
        ours.setblocking(False)
        sid = c.open(ours.fileno(), FRAME, 0x12)
        c.expect(sid, 0x12, FRAME)
        assert c.watch(sid)
        c.route(sid, lambda payload, level: seen.append(int(struct.unpack_from("<h", payload)[0])))
        wire = [encode_audio(struct.pack("<h", k) * (FRAME // 2), RATE) for k in range(frames)]

        def send() -> None:
            for message in wire:
                theirs.sendall(message)
                time.sleep(0.001)

        sender = threading.Thread(target=send)
        start = time.monotonic()
        sender.start()
        deadline = start + 10
        while len(seen) < frames and time.monotonic() < deadline:
            if select.select([c.fileno()], [], [], 0.2)[0]:
                wakes += 1
            c.drain()
            c.deliver(lambda *entry: None, lambda s, exc: None)
        elapsed = time.monotonic() - start
        sender.join()
    finally:
        c.close()
        ours.close()
        theirs.close()
    return seen, wakes, elapsed


def test_the_thread_wakes_the_loop_at_most_once_per_tell_ms_and_loses_nothing() -> None:
    """Each wake-up costs the event loop's thread a switch and a drain's fixed work: frames that trickle in
    alone are held back (at most ``tell_ms``) and drained together, every one of them, in order."""
    seen, wakes, elapsed = _trickle(tell_ms=5.0)
    assert seen == list(range(150))
    assert wakes <= elapsed / 0.005 + 3, f"{wakes} wake-ups in {elapsed:.3f} s"  # 150 with tell_ms=0


def test_tell_ms_is_checked() -> None:
    from ivr.audiosocket import _pacer  # type: ignore[attr-defined]

    for bad in (-1.0, 21.0):
        with pytest.raises(ValueError, match="tell_ms"):
            _pacer.Pacer(tell_ms=bad)
