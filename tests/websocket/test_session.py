"""One session against chan_websocket's queue model, in virtual time: the test ticks Asterisk's timer."""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import AsyncIterator

import pytest
from aiohttp import WSMessage, WSMsgType

from ivr.transport import AudioIn, DigitIn, MediaClosed, MediaTransport, PeerHangup, PlayoutState
from ivr.websocket.playout import WebSocketPlayout
from ivr.websocket.protocol import QUEUE_MAX, XOFF_LEVEL, XON_LEVEL, ControlForm, MediaStart, decode_event
from ivr.websocket.session import SessionConfig, WebSocketMediaSession

from .fake_chan import ChanWebsocketModel, ModelSocket, settle

FRAME = 640


def prompt(frames: int, value: int) -> bytes:
    """``frames`` frames whose every sample is ``value`` (which prompt a played frame came from)."""
    return struct.pack("<h", value) * (frames * FRAME // 2)


def state(playout: WebSocketPlayout) -> PlayoutState:
    return playout.state


def value_of(frame: bytes) -> int:
    return int(struct.unpack_from("<h", frame)[0])


async def open_session(
    model: ChanWebsocketModel | None = None, config: SessionConfig | None = None
) -> tuple[WebSocketMediaSession, ModelSocket]:
    model = model or ChanWebsocketModel()
    sock = ModelSocket(model)
    start = decode_event(model.media_start())
    assert isinstance(start, MediaStart)
    session = WebSocketMediaSession(sock, start, shape="client", peer="test", config=config)
    session.start_reading()
    await settle()
    return session, sock


async def tick(sock: ModelSocket, count: int = 1) -> list[bytes | None]:
    played = []
    for _ in range(count):
        played += sock.tick()
        await settle(8)
    return played


async def events_now(session: WebSocketMediaSession) -> list[object]:
    out: list[object] = []
    queue = session._inbound
    while len(queue):
        out.append(await queue.get())
    return out


def _is_a_media_transport(session: WebSocketMediaSession) -> MediaTransport:
    return session  # mypy checks the session against the transport-neutral contract


async def test_a_whole_prompt_goes_ahead_and_completes_when_asterisk_plays_its_end_mark() -> None:
    session, sock = await open_session()
    playout = session.play(prompt(150, 7))
    await settle()
    assert sock.model.queue_length == 150, "the whole prompt is in Asterisk's queue before one tick"
    assert state(playout) is PlayoutState.QUEUED
    played = await tick(sock, 1)
    assert played[0] is not None
    assert value_of(played[0]) == 7
    assert state(playout) is PlayoutState.PLAYING
    assert playout.first_frame_at is not None
    await tick(sock, 149)
    assert not playout.done, "the last frame is playing: the caller has not heard its end yet"
    await tick(sock, 1)
    result = await playout.wait()
    assert result.state is PlayoutState.COMPLETED
    assert result.frames == 150
    assert len(sock.model.played) == 150
    await session.aclose()


async def test_a_prompt_longer_than_the_queue_flows_under_xoff_and_nothing_is_dropped() -> None:
    session, sock = await open_session()
    playout = session.play(prompt(3000, 3))
    await settle()
    assert XOFF_LEVEL <= sock.model.queue_length < QUEUE_MAX, "sent far ahead, within the queue"
    ticks = 0
    while not playout.done and ticks < 4000:
        await tick(sock)
        ticks += 1
    assert (await playout.wait()).completed
    assert sock.model.dropped_messages == 0
    assert len(sock.model.played) == 3000
    assert all(value_of(f) == 3 for f in sock.model.played)
    assert session.stats.xoff >= 2
    assert sock.model.max_queue_length < QUEUE_MAX
    assert session.stats.max_unconfirmed <= QUEUE_MAX - 10  # 10 frames a message
    await session.aclose()


async def test_xoff_pauses_the_producer_until_xon() -> None:
    session, sock = await open_session()
    session.play(prompt(2000, 1))
    await settle()
    assert sock.model.queue_full
    binaries = sum(isinstance(m, bytes) for m in sock.sent)
    # Play down to the XON level: the producer must stay paused all the way.
    await tick(sock, sock.model.queue_length - XON_LEVEL)
    assert sum(isinstance(m, bytes) for m in sock.sent) == binaries
    await tick(sock, 2)  # the timer finds fewer than 800 queued: XON, and sending resumes
    assert sum(isinstance(m, bytes) for m in sock.sent) > binaries
    await session.aclose()


async def test_barge_in_flushes_before_any_later_frame_and_the_caller_hears_nothing_more_of_it() -> None:
    session, sock = await open_session()
    first = session.play(prompt(500, 1))
    await settle()
    await tick(sock, 10)
    assert session.clear() == 1
    assert first.done
    assert (await first.wait()).state is PlayoutState.CLEARED
    second = session.play(prompt(20, 2))
    await settle()
    flush = sock.sent.index("FLUSH_MEDIA")
    assert all(value_of(m) == 1 for m in sock.sent[:flush] if isinstance(m, bytes))
    assert all(value_of(m) == 2 for m in sock.sent[flush:] if isinstance(m, bytes))
    played = [f for f in await tick(sock, 25) if f is not None]
    assert [value_of(f) for f in played] == [2] * 20, "not one more frame of the cleared prompt"
    assert (await second.wait()).completed
    await session.aclose()


async def test_clear_with_nothing_live_sends_no_flush() -> None:
    session, sock = await open_session()
    assert session.clear() == 0
    await settle()
    assert "FLUSH_MEDIA" not in sock.texts()
    await session.aclose()


async def test_a_streaming_source_is_cut_into_frames_and_its_tail_padded() -> None:
    data = bytes(range(256)) * 7  # 1,792 bytes: two whole frames and a partial one

    chunks = [data[0:1], data[1:640], data[640:1640], data[1640:1643], data[1643:]]

    async def chunked() -> AsyncIterator[bytes]:
        for chunk in chunks:
            await asyncio.sleep(0)
            yield chunk

    session, sock = await open_session()
    playout = session.play(chunked())
    played = [f for f in await tick(sock, 10) if f is not None]
    assert (await playout.wait()).completed
    assert b"".join(played) == data + bytes(3 * FRAME - len(data))
    await session.aclose()


async def test_a_broken_stream_plays_what_came_then_fails() -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield prompt(2, 5)
        raise RuntimeError("TTS went away")

    session, sock = await open_session()
    playout = session.play(broken())
    await tick(sock, 5)
    result = await playout.wait()
    assert result.state is PlayoutState.FAILED
    assert isinstance(result.error, RuntimeError)
    assert [value_of(f) for f in sock.model.played] == [5, 5]
    await session.aclose()


async def test_dtmf_end_is_one_digit_each_and_caller_audio_is_audio_in() -> None:
    session, sock = await open_session()
    sock.feed_text(sock.model.dtmf("5"))
    sock.feed_binary(bytes(FRAME))
    sock.feed_text(sock.model.dtmf("#"))
    await settle()
    assert await events_now(session) == [DigitIn("5"), AudioIn(16000, bytes(FRAME)), DigitIn("#")]
    await session.aclose()


async def test_asterisk_closing_is_a_peer_hangup_then_media_closed() -> None:
    session, sock = await open_session()
    playout = session.play(prompt(100, 1))
    await settle()
    sock.feed_close(1000)
    await settle()
    events = await events_now(session)
    assert [type(e) for e in events] == [PeerHangup, MediaClosed]
    assert session.closed
    assert (await playout.wait()).state is PlayoutState.CLEARED
    await session.aclose()
    assert session._sender is not None
    assert session._sender.done()


async def test_a_connection_that_just_drops_is_media_closed_only() -> None:
    session, sock = await open_session()
    sock.incoming.put_nowait(WSMessage(WSMsgType.CLOSED, None, None))  # EOF without a close frame
    await settle()
    assert await events_now(session) == [MediaClosed("media socket closed")]
    await session.aclose()


async def test_hangup_sends_hangup_then_closes_and_later_prompts_fail() -> None:
    session, sock = await open_session()
    session.hangup("done")
    await session.aclose()
    assert sock.texts()[-1] == "HANGUP"
    assert sock.close_code == 1000
    assert await events_now(session) == [MediaClosed("done")]
    late = session.play(prompt(1, 1))
    result = await late.wait()
    assert result.state is PlayoutState.FAILED
    assert isinstance(result.error, ConnectionError)


@pytest.mark.parametrize(
    ("bad", "said"),
    [
        ("DTMF_END digit:! channel_id:media-1", "digit"),
        ("STATUS queue_length:lots", "queue_length"),
        ('{"event": 1}', "event"),
        ("garbage that is no event", "not an event"),
    ],
)
async def test_a_malformed_event_closes_this_session_with_one_log_line(
    bad: str, said: str, caplog: pytest.LogCaptureFixture
) -> None:
    session, sock = await open_session()
    caplog.set_level(logging.WARNING, logger="ivr.websocket")
    sock.feed_text(bad)
    await settle()
    await session.aclose()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert said in warnings[0].getMessage()
    assert session.close_reason is not None
    assert session.close_reason.startswith("protocol error")
    assert sock.close_code == 1002


async def test_odd_length_audio_is_malformed() -> None:
    session, sock = await open_session()
    sock.feed_binary(b"abc")
    await settle()
    await session.aclose()
    assert session.close_reason is not None
    assert "odd" in session.close_reason


async def test_an_asterisk_without_marks_is_named_and_the_call_closed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    model = ChanWebsocketModel()
    model.answers_marks = False  # chan_websocket before 22.8: MARK_MEDIA is an unknown command
    session, sock = await open_session(model, SessionConfig(mark_timeout=0.05))
    async with asyncio.timeout(5):
        reason = await session.wait_closed()
    await session.aclose()
    assert "MARK_MEDIA" in reason
    assert any("22.8" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)
    assert "HANGUP" in sock.texts()


async def test_a_probe_flushed_before_its_answer_is_sent_again() -> None:
    session, sock = await open_session(config=SessionConfig(mark_timeout=0.2))
    playout = session.play(prompt(50, 1))
    await settle()
    session.clear()  # before the first tick: the probe mark is flushed with the audio
    await settle()
    await tick(sock, 2)
    assert session.marks_confirmed
    await asyncio.sleep(0.3)
    assert not session.closed
    assert (await playout.wait()).state is PlayoutState.CLEARED
    await session.aclose()


async def test_stale_and_foreign_marks_are_ignored() -> None:
    session, sock = await open_session()
    await tick(sock, 1)
    sock.feed_text("MEDIA_MARK_PROCESSED 0")  # answered already
    sock.feed_text("MEDIA_MARK_PROCESSED 99")  # never sent
    sock.feed_text("MEDIA_MARK_PROCESSED someone-else")
    await settle()
    assert not session.closed
    playout = session.play(prompt(3, 1))
    await tick(sock, 5)
    assert (await playout.wait()).completed
    await session.aclose()


async def test_json_form_is_answered_in_json() -> None:
    session, sock = await open_session(ChanWebsocketModel(form=ControlForm.JSON))
    playout = session.play(prompt(3, 1))
    await tick(sock, 5)
    assert (await playout.wait()).completed
    assert sock.texts()[0] == '{"command":"MARK_MEDIA","correlation_id":"0"}'
    status = asyncio.ensure_future(session.status())
    await settle()
    assert (await status).queue_length == 0
    await session.aclose()


async def test_status_reports_asterisks_queue() -> None:
    session, _sock = await open_session()
    session.play(prompt(30, 1))
    await settle()
    status = asyncio.ensure_future(session.status())
    await settle()
    assert (await status).queue_length == 30
    await session.aclose()


async def test_no_task_per_frame_and_frames_go_in_few_messages() -> None:
    session, sock = await open_session()
    before = len(asyncio.all_tasks())
    playout = session.play(prompt(400, 1))
    await settle()
    assert len(asyncio.all_tasks()) == before
    await tick(sock, 401)
    assert (await playout.wait()).completed
    assert session.stats.messages_sent == 40  # 10 frames a message
    await session.aclose()


def test_a_channel_that_is_not_linear_pcm_is_refused_with_what_to_ask_for() -> None:
    async def scenario() -> None:
        start = decode_event(
            "MEDIA_START connection_id:x channel:c channel_id:m format:ulaw optimal_frame_size:160 ptime:20"
        )
        assert isinstance(start, MediaStart)
        with pytest.raises(ValueError, match="slin16"):
            WebSocketMediaSession(ModelSocket(ChanWebsocketModel()), start, shape="client", peer="t")

    asyncio.run(scenario())


async def test_other_commands_go_out_but_not_the_sessions_own() -> None:
    session, sock = await open_session()
    session.send_command("PAUSE_MEDIA")
    await settle()
    assert "PAUSE_MEDIA" in sock.texts()
    assert sock.model.paused
    for verb in ("MARK_MEDIA", "FLUSH_MEDIA", "HANGUP", "GET_STATUS", "START_MEDIA_BUFFERING"):
        with pytest.raises(ValueError, match="belongs to the session"):
            session.send_command(verb)
    with pytest.raises(ValueError, match="plain-text"):
        session.send_command("SET_MEDIA_DIRECTION", "out")
    await session.aclose()
