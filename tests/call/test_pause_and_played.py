"""What the transports give turn-taking: pause and resume of a prompt (a backchannel over it), and the
frames the caller hears, told to the echo gate in step with the caller's own frames (ivr.transport).

AudioSocket holds the prompt on its own clock; WebSocket media sends PAUSE_MEDIA, which chan_websocket
(22.6+) honours by dequeuing nothing and playing silence while its queue stays: both go on from the very
frame where they stopped. WebSocket frames are told as they are handed to Asterisk, far ahead of playing,
with the time Asterisk's queue will reach them.
"""

from __future__ import annotations

import itertools
import struct

import pytest

from ivr.audiosocket.clock import ManualClock
from ivr.audiosocket.player import Player
from ivr.call.listening import SILENT_DB, PlayedLine
from ivr.media.bargein import frame_level_db
from ivr.transport import PlayoutState
from ivr.websocket.session import SessionConfig, WebSocketMediaSession
from tests.websocket.fake_chan import ChanWebsocketModel, ModelSocket, settle

from ..websocket.test_session import open_session, prompt, tick, value_of

FRAME = 640


class Taps:
    """A ``PlayedTap`` that records what it is told."""

    def __init__(self) -> None:
        self.frames: list[tuple[int | None, float]] = []
        self.events: list[tuple[str, float]] = []

    def played(self, frame: bytes | memoryview | None, at: float) -> None:
        self.frames.append((None if frame is None else value_of(bytes(frame)), at))

    def played_db(self, level_db: float, at: float) -> None:
        self.frames.append((None, at))

    def flushed(self, at: float) -> None:
        self.events.append(("flushed", at))

    def held(self, at: float) -> None:
        self.events.append(("held", at))

    def released(self, at: float) -> None:
        self.events.append(("released", at))


def numbered(frames: int, rate: int = 16000) -> bytes:
    """Frame k holds the sample value k + 1 everywhere: which frame played is readable."""
    n = rate // 50
    return b"".join(struct.pack("<h", k + 1) * n for k in range(frames))


async def test_audiosocket_holds_the_prompt_and_plays_on_from_the_same_frame() -> None:
    clock = ManualClock()
    written: list[bytes] = []
    player = Player(written.append, 16000, clock)
    taps = Taps()
    player.tap = taps
    playback = player.play(numbered(10))
    for k in range(3):
        player.tick(k * 0.02)
    assert player.hold()
    for k in range(3, 6):
        player.tick(k * 0.02)
    player.release()
    for k in range(6, 20):
        player.tick(k * 0.02)
    values = [struct.unpack_from("<h", w, 3)[0] for w in written]
    assert values[:3] == [1, 2, 3]
    assert values[3:6] == [0, 0, 0], "silence while held"
    assert values[6:13] == [4, 5, 6, 7, 8, 9, 10], "on from the frame where it stopped"
    assert (await playback.wait()).state is PlayoutState.COMPLETED
    assert [v for v, _ in taps.frames[:6]] == [1, 2, 3, None, None, None], "the tap hears what was sent"
    assert [at for _, at in taps.frames[:3]] == [0.0, 0.02, 0.04]


def test_audiosocket_has_nothing_to_hold_when_idle() -> None:
    player = Player(lambda _m: None, 8000, ManualClock())
    assert not player.hold()


async def test_websocket_pause_keeps_asterisks_queue_and_resume_plays_on() -> None:
    session, sock = await open_session()
    taps = Taps()
    session.on_played(taps)
    playout = session.play(prompt(30, 7))
    await settle()
    assert len(taps.frames) == 30, "told as handed to Asterisk, ahead of playing"
    dues = [at for _, at in taps.frames]
    assert all(abs((b - a) - 0.02) < 1e-9 for a, b in itertools.pairwise(dues)), "one per 20 ms"
    played = await tick(sock, 5)
    assert all(f is not None and value_of(f) == 7 for f in played)
    assert session.pause()
    await settle()
    assert "PAUSE_MEDIA" in sock.texts()
    assert sock.model.paused
    held = await tick(sock, 10)
    assert all(f is None for f in held), "Asterisk plays silence while paused"
    assert sock.model.queue_length == 25, "and keeps its queue"
    session.resume()
    await settle()
    assert "CONTINUE_MEDIA" in sock.texts()
    rest = await tick(sock, 26)
    assert sum(f is not None for f in rest) == 25, "the rest of the prompt, not one frame lost or repeated"
    assert (await playout.wait()).completed
    assert [e for e, _ in taps.events] == ["held", "released"]
    await session.aclose()


async def test_websocket_clear_while_paused_flushes_and_lets_the_next_prompt_play() -> None:
    session, sock = await open_session()
    taps = Taps()
    session.on_played(taps)
    first = session.play(prompt(50, 1))
    await settle()
    await tick(sock, 3)
    assert session.pause()
    await settle()
    assert session.clear() == 1
    assert (await first.wait()).state is PlayoutState.CLEARED
    await settle()
    texts = sock.texts()
    assert texts.index("FLUSH_MEDIA") < texts.index("CONTINUE_MEDIA"), "nothing of it plays in between"
    assert not sock.model.paused
    assert "flushed" in [e for e, _ in taps.events]
    second = session.play(prompt(5, 2))
    await settle()
    played = await tick(sock, 6)
    assert [value_of(f) for f in played if f is not None] == [2] * 5
    assert (await second.wait()).completed
    await session.aclose()


async def test_websocket_pause_with_nothing_playing_is_refused() -> None:
    session, _sock = await open_session()
    assert not session.pause()
    session.resume()  # harmless
    await session.aclose()


class Gate:
    """Records the levels an echo gate is told."""

    def __init__(self) -> None:
        self.levels: list[float] = []

    def note_playback_level(self, level: float) -> None:
        self.levels.append(level)


def test_played_line_gives_the_gate_each_frame_when_it_plays() -> None:
    gate = Gate()
    line = PlayedLine(gate)  # type: ignore[arg-type]
    loud = struct.pack("<hh", 8000, -8000) * 160
    for k in range(5):  # a WebSocket burst: five frames told at once, due one per 20 ms from t=1.0
        line.played(loud, 1.0 + 0.02 * k)
    line.advance(1.005)
    assert gate.levels == [pytest.approx(frame_level_db(loud))], "only what is due by then"
    line.advance(1.045)
    assert len(gate.levels) == 3
    line.flushed(1.05)  # Asterisk's queue was flushed: frames due later never play
    line.advance(1.2)
    assert len(gate.levels) == 4, "the frame due at 1.06 was flushed"
    assert gate.levels[-1] == SILENT_DB, "a stretch with nothing played counts as silence"


def test_played_line_shifts_frames_held_by_a_pause() -> None:
    gate = Gate()
    line = PlayedLine(gate)  # type: ignore[arg-type]
    loud = struct.pack("<hh", 8000, -8000) * 160
    for k in range(4):
        line.played(loud, 2.0 + 0.02 * k)
    line.advance(2.0)
    line.held(2.01)
    line.advance(2.5)
    assert sum(v > -60 for v in gate.levels) == 1, "nothing of the prompt plays while paused"
    line.released(3.01)  # paused for one second
    line.advance(3.02)
    assert sum(v > -60 for v in gate.levels) == 2, "the next frame plays one second later"


async def test_a_session_without_a_tap_sends_as_before() -> None:
    model = ChanWebsocketModel()
    sock = ModelSocket(model)
    from ivr.websocket.protocol import MediaStart, decode_event

    start = decode_event(model.media_start())
    assert isinstance(start, MediaStart)
    session = WebSocketMediaSession(sock, start, shape="client", peer="t", config=SessionConfig())
    session.start_reading()
    await settle()
    playout = session.play(prompt(3, 4))
    await settle()
    assert [value_of(f) for f in await tick(sock, 4) if f is not None] == [4, 4, 4]
    assert (await playout.wait()).completed
    await session.aclose()
