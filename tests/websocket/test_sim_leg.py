"""The simulated Asterisk's side of a WebSocket media connection (``ivr.sim.ws_media``): what its ticks
play, the stalls it counts, and how it answers the app, driven tick by tick."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import WSMessage, WSMsgType

from ivr.audiosocket.clock import FrameClock, ManualClock
from ivr.sim.chan_websocket import ChanWebsocketModel
from ivr.sim.ws_media import WebSocketMediaLeg

FRAME = 640


class Wire:
    """An in-memory WebSocket: what the leg sends, and what the app sends it."""

    def __init__(self) -> None:
        self.sent: list[bytes | str] = []
        self.incoming: asyncio.Queue[WSMessage] = asyncio.Queue()
        self.close_code: int | None = None

    async def send_bytes(self, data: bytes, compress: int | None = None) -> None:
        self.sent.append(data)

    async def send_str(self, data: str, compress: int | None = None) -> None:
        self.sent.append(data)

    async def receive(self, timeout: float | None = None) -> WSMessage:
        return await self.incoming.get()

    async def close(self, *, code: int = 1000, message: bytes = b"") -> bool:
        self.close_code = code
        self.incoming.put_nowait(WSMessage(WSMsgType.CLOSED, None, None))
        return True

    def app_sends(self, data: bytes | str) -> None:
        kind = WSMsgType.BINARY if isinstance(data, bytes) else WSMsgType.TEXT
        self.incoming.put_nowait(WSMessage(kind, data, None))

    def texts(self) -> list[str]:
        return [m for m in self.sent if isinstance(m, str)]


@pytest.fixture
async def leg() -> AsyncIterator[tuple[WebSocketMediaLeg, Wire]]:
    wire = Wire()
    clock = FrameClock(ManualClock())
    model = ChanWebsocketModel(channel_id="m1")
    made = WebSocketMediaLeg(wire, model, clock, channel_id="m1", rate=16000, talks=True)
    task = asyncio.ensure_future(made.run())
    yield made, wire
    await made.close()
    await task


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def audio(frames: int, value: int = 1) -> bytes:
    return bytes([value, 0]) * (FRAME // 2) * frames


async def test_a_gap_inside_a_prompt_is_a_stall_and_a_mark_ends_a_prompt(
    leg: tuple[WebSocketMediaLeg, Wire],
) -> None:
    media, wire = leg
    wire.app_sends("MARK_MEDIA 0")
    wire.app_sends(audio(3))
    await settle()
    for n in range(6):  # the mark and 3 frames (the mark goes with the first tick), 3 empty ticks
        media.tick(n * 0.02)
    wire.app_sends(audio(2))
    wire.app_sends("MARK_MEDIA 1")
    await settle()
    for n in range(6, 10):
        media.tick(n * 0.02)
    assert media.frames_played == 5
    assert (media.stalls, media.stalled_ticks) == (1, 3), "the app fell behind for 3 ticks"
    wire.app_sends(audio(1))  # a new prompt after the end mark was reached: no stall
    await settle()
    for n in range(10, 14):
        media.tick(n * 0.02)
    assert media.stalls == 1
    await settle()
    assert [t for t in wire.texts() if "MARK" in t] == ["MEDIA_MARK_PROCESSED 0", "MEDIA_MARK_PROCESSED 1"]


async def test_the_caller_talks_every_tick_and_hears_silence_where_nothing_played(
    leg: tuple[WebSocketMediaLeg, Wire],
) -> None:
    media, wire = leg
    wire.app_sends(audio(2, value=7))
    await settle()
    for n in range(4):
        media.tick(n * 0.02)
    await settle()
    assert sum(isinstance(m, bytes) for m in wire.sent) == 4, "a phone's line is never idle"
    assert media.track == audio(2, value=7) + bytes(2 * FRAME), "in step with what the caller sent"
    assert bytes(media.heard) == audio(2, value=7), "only what Asterisk played is heard"


async def test_keys_flush_hangup_and_commands_asterisk_would_ignore(
    leg: tuple[WebSocketMediaLeg, Wire],
) -> None:
    media, wire = leg
    await media.send_dtmf("5")
    wire.app_sends(audio(10))
    wire.app_sends("FLUSH_MEDIA")
    await settle()
    media.tick(0.0)
    assert media.frames_played == 0, "FLUSH_MEDIA dropped the queue"
    wire.app_sends("NOT_A_COMMAND")
    await settle()
    assert media.error is not None
    assert "ignores" in media.error
    wire.app_sends("HANGUP")
    await media.wait_closed()
    assert media.hangup_received
    assert wire.close_code == 1000
    assert "DTMF_END digit:5 channel_id:m1" in wire.texts()
