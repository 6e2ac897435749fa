"""Server scenarios over real TCP sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import threading
import time
import uuid
from collections.abc import AsyncIterator, Sequence

import pytest

from ivr.audiosocket import (
    Audio,
    AudioSocketConfig,
    AudioSocketServer,
    AudioSocketSession,
    Hangup,
    encode_audio,
    encode_dtmf,
    encode_hangup,
)
from ivr.audiosocket.native import native_available
from ivr.audiosocket.protocol import FrameDecoder, Kind, encode_uuid
from ivr.transport import AudioIn, DigitIn, MediaClosed, PeerHangup

from ..services import unavailable
from .peer import AsteriskPeer, open_call


@pytest.fixture(autouse=True, params=["native", "loop"])
def pacing(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every scenario twice: paced (and read) by the native thread, and on the event loop."""
    if request.param == "loop":
        monkeypatch.setattr("ivr.audiosocket.server.native_available", lambda: False)
    elif not native_available():
        unavailable(
            "native pacer (ivr.audiosocket._pacer)", "pip install -e . with gcc and the Python headers"
        )
    return str(request.param)


@pytest.fixture
async def server(pacing: str) -> AsyncIterator[AudioSocketServer]:
    srv = AudioSocketServer(AudioSocketConfig(port=0, uuid_timeout=0.3))
    await srv.start()
    assert srv.pacing == pacing
    yield srv
    await srv.close()


def audio_kinds(frames: Sequence[object]) -> set[int]:
    kinds = set()
    for frame in frames:
        assert isinstance(frame, Audio | Hangup), f"the app must only send audio or hangup, got {frame!r}"
        kinds.add(frame.rate if isinstance(frame, Audio) else 0)
    return kinds


async def test_normal_call_audio_both_ways_dtmf_and_hangup(server: AudioSocketServer) -> None:
    call_id = uuid.uuid4()
    expectation = server.expect(call_id, "slin16")  # registered before Asterisk is asked to connect
    peer = await AsteriskPeer.connect(server.port, call_id)
    session = await expectation.wait(2)
    assert session.rate == 16000
    assert session.mode == "expected"
    assert server.sessions[call_id] is session

    first = await peer.read_frames(3)
    assert first == [Audio(16000, bytes(640))] * 3, "silence starts at once"

    for i in range(5):
        await peer.send(encode_audio(bytes([i, 0]) * 320, 16000))
    await peer.send(encode_dtmf("7"))
    events = [await anext(aiter(session)) for _ in range(6)]
    assert [type(e) for e in events] == [AudioIn] * 5 + [DigitIn]
    assert isinstance(events[4], AudioIn)
    assert events[4].payload == bytes([4, 0]) * 320
    assert events[5] == DigitIn("7")

    prompt = b"\x05\x01" * 320 * 3
    playback = session.play(prompt)
    result = await playback.wait()
    assert result.frames == 3
    got = await peer.read_frames(40, timeout=2)
    payloads = [bytes(f.payload) for f in got if isinstance(f, Audio)]
    assert b"\x05\x01" * 320 in payloads
    assert audio_kinds(got) == {16000}

    await peer.close()  # Asterisk hangs up by closing (FIN), never with 0x00
    tail = [e async for e in session]
    assert isinstance(tail[-1], MediaClosed)
    assert tail[-1].reason == "peer closed the connection"
    await session.wait_closed()
    assert call_id not in server.sessions
    assert server.frame_clock is not None
    assert len(server.frame_clock) == 0


async def test_application_hangup_sends_hangup_message_then_closes(server: AudioSocketServer) -> None:
    peer, session = await open_call(server, "slin")
    session.hangup()
    frames = await peer.read_until_eof()
    assert frames[-1] == Hangup()
    assert audio_kinds(frames) <= {8000, 0}
    await peer.close()


async def test_no_uuid_in_time_closes(server: AudioSocketServer) -> None:
    peer = await AsteriskPeer.connect(server.port)
    frames = await peer.read_until_eof(timeout=3)
    assert frames == [Hangup()]
    assert server.stats.uuid_timeouts == 1
    await peer.close()


async def test_first_message_must_be_uuid(server: AudioSocketServer) -> None:
    peer = await AsteriskPeer.connect(server.port)
    await peer.send(encode_audio(bytes(320), 8000))
    assert await peer.read_until_eof() == [Hangup()]
    assert server.stats.protocol_errors == 1
    await peer.close()


async def test_expectation_times_out_and_is_dropped(server: AudioSocketServer) -> None:
    call_id = uuid.uuid4()
    expectation = server.expect(call_id)
    with pytest.raises(TimeoutError, match=str(call_id)):
        await expectation.wait(0.05)
    peer = await AsteriskPeer.connect(server.port, call_id)  # too late now: refused
    assert await peer.read_until_eof() == [Hangup()]
    assert server.stats.refused_unexpected == 1
    await peer.close()


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (b"\x12\x00\x03" + bytes(3), "odd-length audio"),
        (b"\x10\xff\xf0", "cap"),
        (b"\x03\x00\x01Z", "invalid DTMF"),
    ],
)
async def test_malformed_frame_closes_only_that_session(
    server: AudioSocketServer, bad: bytes, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    good_id, bad_id = uuid.uuid4(), uuid.uuid4()
    good_exp, bad_exp = server.expect(good_id, "slin16"), server.expect(bad_id, "slin16")
    good = await AsteriskPeer.connect(server.port, good_id)
    bad_peer = await AsteriskPeer.connect(server.port, bad_id)
    good_session, bad_session = await good_exp.wait(2), await bad_exp.wait(2)

    caplog.set_level(logging.WARNING, logger="ivr.audiosocket")
    await bad_peer.send(encode_audio(bytes(640), 16000) + bad)
    frames = await bad_peer.read_until_eof()
    assert frames[-1] == Hangup()
    events = [e async for e in bad_session]
    assert isinstance(events[0], AudioIn), "the good frame before the bad one is not lost"
    assert isinstance(events[-1], MediaClosed)
    assert reason in events[-1].reason
    assert len([r for r in caplog.records if "protocol error" in r.getMessage()]) == 1

    await good.send(encode_audio(b"\x01\x00" * 320, 16000))
    event = await anext(aiter(good_session))
    assert isinstance(event, AudioIn)
    assert not good_session.closed
    assert len(await good.read_frames(5)) == 5
    await good.close()
    await bad_peer.close()


@pytest.mark.parametrize("how", ["close", "reset"])
async def test_a_message_cut_short_is_logged_once_whether_the_peer_closes_or_resets(
    server: AudioSocketServer, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    peer, session = await open_call(server)
    caplog.set_level(logging.WARNING, logger="ivr.audiosocket")
    await peer.send(encode_audio(bytes(640), 16000)[:103])  # a 640-byte frame's header and 100 bytes
    await asyncio.sleep(0.1)
    if how == "reset":  # SO_LINGER 0: the close sends a reset, as a peer that crashed
        sock = peer.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.writer.transport.abort()
    else:
        await peer.close()
    events = [e async for e in session]
    assert isinstance(events[-1], MediaClosed)
    cut = [r.getMessage() for r in caplog.records if "in the middle of a message" in r.getMessage()]
    assert len(cut) == 1, cut
    assert "(103 bytes of it received)" in cut[0]
    if how == "reset":  # (a close with our unread bytes in the peer's buffer is a reset too)
        assert "connection lost" in cut[0]


async def test_unknown_kind_is_logged_once_and_ignored(
    server: AudioSocketServer, caplog: pytest.LogCaptureFixture
) -> None:
    peer, session = await open_call(server, "slin")
    caplog.set_level(logging.WARNING, logger="ivr.audiosocket")
    await peer.send(b"\x20\x00\x02ab" * 3 + encode_dtmf("1"))
    assert await anext(aiter(session)) == DigitIn("1")
    assert len([r for r in caplog.records if "unknown message kind 0x20" in r.getMessage()]) == 1
    assert not session.closed
    await peer.close()


async def test_duplicate_uuid_is_refused_and_first_keeps_working(server: AudioSocketServer) -> None:
    call_id = uuid.uuid4()
    exp = server.expect(call_id, "slin")
    first = await AsteriskPeer.connect(server.port, call_id)
    session = await exp.wait(2)
    second = await AsteriskPeer.connect(server.port, call_id)
    assert await second.read_until_eof() == [Hangup()]
    assert server.stats.refused_duplicate == 1
    await first.send(encode_dtmf("4"))
    assert await anext(aiter(session)) == DigitIn("4")
    await first.close()
    await second.close()


async def test_unexpected_uuid_refused_in_expect_only_mode(server: AudioSocketServer) -> None:
    peer = await AsteriskPeer.connect(server.port, uuid.uuid4())
    assert await peer.read_until_eof() == [Hangup()]
    assert server.stats.refused_unexpected == 1
    await peer.close()


async def test_slow_consumer_drops_oldest_audio_never_control_events() -> None:
    srv = AudioSocketServer(AudioSocketConfig(port=0, inbound_max_frames=10))
    async with srv:
        call_id = uuid.uuid4()
        exp = srv.expect(call_id, "slin")
        peer = await AsteriskPeer.connect(srv.port, call_id)
        session = await exp.wait(2)
        session.on_audio(lambda payload: None)
        session.on_audio(None)  # a consumer that listened and fell behind (before: the call's pre-roll)
        burst = b"".join(
            encode_audio(i.to_bytes(2, "little") * 160, 8000) + (encode_dtmf("9") if i == 5 else b"")
            for i in range(50)
        )
        await peer.send(burst)
        await peer.read_frames(2)  # give the server time to read it all
        async with asyncio.timeout(5):
            while session.frames_received < 51:  # noqa: ASYNC110 - polling a counter the server bumps
                await asyncio.sleep(0.01)
        events = []
        while (event := session.inbound.get_nowait()) is not None:
            events.append(event)
        audio = [e for e in events if isinstance(e, AudioIn)]
        assert [int.from_bytes(a.payload[:2], "little") for a in audio] == list(range(40, 50))
        assert DigitIn("9") in events
        assert session.dropped_audio == 40
        assert session.media_stats().preroll_discarded == 0
        await peer.close()


async def test_accept_mode_starts_at_8k_and_follows_the_peer_rate() -> None:
    sessions: list[AudioSocketSession] = []
    release = asyncio.Event()

    async def handler(session: AudioSocketSession) -> None:
        sessions.append(session)
        await release.wait()

    srv = AudioSocketServer(AudioSocketConfig(port=0), on_session=handler)
    async with srv:
        peer = await AsteriskPeer.connect(srv.port, uuid.uuid4())
        first = await peer.read_frames(1)
        assert first == [Audio(8000, bytes(320))], "AudioSocket() is 8 kHz until shown otherwise"
        await peer.send(encode_audio(bytes(640), 16000))
        for _ in range(200):
            frames = await peer.read_frames(1)
            if isinstance(frames[0], Audio) and frames[0].rate == 16000:
                break
        else:
            pytest.fail("outbound rate never switched to 16 kHz")
        assert sessions[0].mode == "accepted"
        assert sessions[0].rate == 16000
        release.set()  # handler returns: the server hangs the call up
        tail = await peer.read_until_eof()
        assert tail[-1] == Hangup()
        await peer.close()


async def test_idle_timeout_only_in_accept_mode() -> None:
    async def handler(session: AudioSocketSession) -> None:
        async for _ in session:
            pass

    srv = AudioSocketServer(AudioSocketConfig(port=0, idle_timeout=0.3), on_session=handler)
    async with srv:
        expected_id = uuid.uuid4()
        exp = srv.expect(expected_id, "slin")
        held = await AsteriskPeer.connect(srv.port, expected_id)  # a held caller: sends nothing
        idle = await AsteriskPeer.connect(srv.port, uuid.uuid4())
        assert (await idle.read_until_eof(timeout=5))[-1] == Hangup()
        assert srv.stats.idle_timeouts == 1
        session = await exp.wait(1)
        assert not session.closed, "an expected call is never hung up for silence"
        await held.close()
        await idle.close()


async def test_connection_cap() -> None:
    srv = AudioSocketServer(AudioSocketConfig(port=0, max_connections=2))
    async with srv:
        peers = [await AsteriskPeer.connect(srv.port) for _ in range(2)]
        extra = await AsteriskPeer.connect(srv.port)
        assert await extra.read_until_eof() == [Hangup()]
        assert srv.stats.refused_capacity == 1
        for peer in [*peers, extra]:
            await peer.close()


async def test_half_close_from_peer_closes_our_side_at_once(server: AudioSocketServer) -> None:
    peer, session = await open_call(server, "slin")
    peer.writer.write_eof()  # FIN only: we must not sit in CLOSE-WAIT
    await peer.read_until_eof()
    assert await session.wait_closed() == "peer closed the connection"
    await peer.close()


async def test_peer_hangup_message_ends_the_session(server: AudioSocketServer) -> None:
    peer, session = await open_call(server, "slin")
    await peer.send(encode_hangup())
    events = [e async for e in session]
    assert events[-2:] == [PeerHangup("peer sent hangup"), MediaClosed("peer sent hangup")]
    await peer.read_until_eof()
    await peer.close()


async def test_mislabelled_g711_is_logged_once(
    server: AudioSocketServer, caplog: pytest.LogCaptureFixture
) -> None:
    peer, session = await open_call(server, "slin")
    caplog.set_level(logging.WARNING, logger="ivr.audiosocket")
    await peer.send(bytes([Kind.SLIN_8K, 0, 160]) + bytes(160) + bytes([Kind.SLIN_8K, 0, 160]) + bytes(160))
    await anext(aiter(session))
    await anext(aiter(session))
    messages = [r.getMessage() for r in caplog.records if "160-byte" in r.getMessage()]
    assert len(messages) == 1
    assert "G.711" in messages[0]
    await peer.close()


async def test_close_hangs_up_live_sessions_and_cancels_handlers() -> None:
    started = asyncio.Event()

    async def handler(session: AudioSocketSession) -> None:
        started.set()
        await asyncio.sleep(3600)

    srv = AudioSocketServer(AudioSocketConfig(port=0), on_session=handler)
    await srv.start()
    peer = await AsteriskPeer.connect(srv.port, uuid.uuid4())
    await started.wait()
    await srv.close()
    assert (await peer.read_until_eof())[-1] == Hangup()
    assert not srv.sessions
    await peer.close()


async def test_connections_per_source_address_are_capped() -> None:
    srv = AudioSocketServer(AudioSocketConfig(port=0, max_per_source=2))
    async with srv:
        peers = [await AsteriskPeer.connect(srv.port) for _ in range(2)]
        extra = await AsteriskPeer.connect(srv.port)
        assert await extra.read_until_eof() == [Hangup()]
        await extra.close()
        await peers[0].close()
        await peers[0].read_until_eof()
        again = await AsteriskPeer.connect(srv.port)  # a slot came free
        await asyncio.sleep(0.05)
        assert srv.stats.refused_capacity == 1
        for peer in [peers[1], again]:
            await peer.close()


class _TalkingAsterisk(threading.Thread):
    """Like Asterisk's side of a bridged call, in its own thread (so it keeps talking while our event
    loop is busy): a frame every 20 ms until it reads our hangup message, then it reads on until our FIN
    and closes. ``reset`` says whether our side reset the connection instead."""

    def __init__(self, port: int, call_id: uuid.UUID) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.sendall(encode_uuid(call_id))
        self.reset = False
        self.got_hangup = False
        self.stop_sending = threading.Event()

    def run(self) -> None:
        sender = threading.Thread(target=self._send, daemon=True)
        sender.start()
        decoder = FrameDecoder(max_payload=65535)
        self.sock.settimeout(5)
        try:
            while data := self.sock.recv(65536):
                if not self.got_hangup and any(isinstance(f, Hangup) for f in decoder.feed(data)):
                    self.got_hangup = True
                    self.stop_sending.set()
        except ConnectionResetError:
            self.reset = True
        except OSError:
            pass
        finally:
            self.stop_sending.set()
            sender.join(2)
            self.sock.close()

    def _send(self) -> None:
        frame = encode_audio(bytes(640), 16000)
        try:
            while not self.stop_sending.wait(0.02):
                self.sock.sendall(frame)
        except (ConnectionResetError, BrokenPipeError):
            self.reset = True
        except OSError:
            pass


@pytest.mark.parametrize("how", ["hangup", "server_close"])
async def test_our_hangup_closes_with_a_fin_even_with_unread_audio(how: str) -> None:
    """Defect 6: closing with the peer's audio unread (a busy loop at SIGTERM) made the kernel send a
    reset after the hangup message; we stop writing (FIN), drain what is left, then close."""
    sessions: list[AudioSocketSession] = []

    async def handler(session: AudioSocketSession) -> None:
        sessions.append(session)
        await session.wait_closed()

    srv = AudioSocketServer(AudioSocketConfig(port=0), on_session=handler)
    await srv.start()
    asterisk = _TalkingAsterisk(srv.port, uuid.uuid4())
    asterisk.start()
    async with asyncio.timeout(5):
        while not sessions:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)
    time.sleep(0.1)  # noqa: ASYNC251 - the loop is busy (shutdown work): the peer's frames pile up unread
    if how == "hangup":
        sessions[0].hangup("shutting down")
    else:
        await srv.close()
    await asyncio.to_thread(asterisk.join, 5)
    await srv.close()
    assert asterisk.got_hangup, "the hangup message arrives first"
    assert not asterisk.reset, "our side closed with a FIN, never a reset"


async def _audio_events(session: AudioSocketSession, count: int) -> list[bytes]:
    got: list[bytes] = []
    async with asyncio.timeout(5):
        async for event in session:
            if isinstance(event, AudioIn):
                got.append(event.payload)
                if len(got) == count:
                    break
    return got


async def test_connections_share_one_read_buffer_without_mixing_their_audio(
    server: AudioSocketServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Every connection reads into the server's one buffer, and the usual message (one 20 ms frame of the
    session's rate) skips the decoder: each call still gets exactly its own audio, in order, also when a
    message arrives split over reads or several at once, and a later error names the right offset."""
    ids = [uuid.uuid4(), uuid.uuid4()]
    expectations = [server.expect(ids[0], "slin16"), server.expect(ids[1], "slin")]
    peers = [await AsteriskPeer.connect(server.port, call_id) for call_id in ids]
    sessions = [await e.wait(2) for e in expectations]
    assert sessions[0].audio_message == 643
    assert sessions[1].audio_message == 323
    wide = [bytes([i, 1]) * 320 for i in range(6)]
    narrow = [bytes([i, 2]) * 160 for i in range(6)]
    for i in range(6):
        message = encode_audio(wide[i], 16000)
        if i == 2:  # split over two reads: the decoder gathers it
            await peers[0].send(message[:100])
            await asyncio.sleep(0.01)
            await peers[0].send(message[100:])
        elif i == 4:  # two messages in one read
            await peers[0].send(message + encode_audio(wide[5], 16000))
        elif i != 5:
            await peers[0].send(message)
        await peers[1].send(encode_audio(narrow[i], 8000))
        await asyncio.sleep(0.005)
    assert await _audio_events(sessions[0], 6) == wide
    assert await _audio_events(sessions[1], 6) == narrow
    assert sessions[0].frames_received == 6
    assert server._connections
    assert all(c._buffer is server.read_buffer for c in server._connections)
    caplog.set_level(logging.WARNING, logger="ivr.audiosocket")
    await peers[1].send(bytes([Kind.DTMF, 0, 2]) + b"12")  # 16 + 3 (UUID) + 6 * 323 bytes before it
    await peers[1].read_until_eof()
    [line] = [r.getMessage() for r in caplog.records if "protocol error" in r.getMessage()]
    assert f"offset={19 + 6 * 323}" in line
    for peer in peers:
        await peer.close()


class TrimLog:
    """A server's trims and full collections (patched: nothing is really collected or freed)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, srv: AudioSocketServer) -> None:
        self.trims: list[tuple[float, int]] = []
        """(when, live connections) per trim."""
        self.collections: list[tuple[float, int]] = []
        """(when, trims before it) per full collection."""

        def release() -> bool:
            self.trims.append((asyncio.get_running_loop().time(), len(srv._connections)))
            return True

        def collect() -> int:
            self.collections.append((asyncio.get_running_loop().time(), len(self.trims)))
            return 0

        monkeypatch.setattr("ivr.audiosocket.server.release_free_memory", release)
        monkeypatch.setattr("ivr.audiosocket.server.gc.collect", collect)


@pytest.mark.virtual_time
async def test_freed_memory_goes_back_while_calls_are_live_and_once_they_have_ended(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    srv = AudioSocketServer(AudioSocketConfig(port=0, trim_interval=5.0))
    log = TrimLog(monkeypatch, srv)
    trims = log.trims
    async with srv:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(10)
        assert trims == [], "an idle server that never had a call has nothing to give back"
        peer, _ = await open_call(srv, "slin")
        started = loop.time()
        await asyncio.sleep(12.5)
        assert [n for _, n in trims] == [1, 1, 1], "once the set-ups settled, then every interval"
        assert trims[0][0] - started <= 2.5, "a second after the last connection came"
        assert 4.5 <= trims[1][0] - trims[0][0] <= 5.5
        await peer.close()
        ended = loop.time()
        await asyncio.sleep(20)
        assert len(trims) == 4, "once more as soon as the last call has ended"
        assert trims[3][1] == 0
        assert trims[3][0] - ended <= 2.5
        assert all(t > started for t, _ in trims)
        assert [n for _, n in log.collections] == [3], (
            "the calls' cycles are collected once, after the last call, before its trim"
        )
    assert srv.trims == 4


@pytest.mark.virtual_time
async def test_under_steady_churn_only_the_interval_trims(monkeypatch: pytest.MonkeyPatch) -> None:
    srv = AudioSocketServer(AudioSocketConfig(port=0, trim_interval=5.0))
    log = TrimLog(monkeypatch, srv)
    async with srv:
        peers: list[AsteriskPeer] = []
        for _ in range(24):  # a call comes (and an older one goes) every 0.5 s for 12 s: nothing settles
            peers.append((await open_call(srv, "slin"))[0])
            if len(peers) > 3:
                await peers.pop(0).close()
            await asyncio.sleep(0.5)
        assert len(log.trims) == 2
        assert 4.5 <= log.trims[1][0] - log.trims[0][0] <= 5.5
        for peer in peers:
            await peer.close()


@pytest.mark.virtual_time
async def test_the_trim_follows_the_calls_not_only_their_connections(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An ARI call's teardown goes on over REST after its media connection closed: the last trim (and
    the collection before it) waits until the calls say they are over."""
    calls = [0, 0]  # (begun plus ended, live), as Metrics.call_activity gives them
    srv = AudioSocketServer(
        AudioSocketConfig(port=0, trim_interval=30.0), activity=lambda: (calls[0], calls[1])
    )
    log = TrimLog(monkeypatch, srv)
    async with srv:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(2)
        calls[:] = [1, 1]  # a call began; no media connection (yet, or any more)
        await asyncio.sleep(3)
        assert len(log.trims) == 1, "the set-up settled: trimmed, with the call live"
        assert log.collections == [], "no full collection while a call is live"
        calls[:] = [2, 0]  # its teardown has ended
        ended = loop.time()
        await asyncio.sleep(3)
        assert len(log.trims) == 2
        assert log.trims[1][0] - ended <= 2.5
        assert [n for _, n in log.collections] == [1], "collected once, after the call, before its trim"
