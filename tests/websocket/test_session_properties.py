"""Random schedules of prompts, Asterisk ticks and barge-ins against the chan_websocket model.

Whatever the schedule: Asterisk never drops a message (its queue is never full when audio arrives),
a completed prompt was played to its last frame before it completed, nothing of a cleared prompt is
queued once the flush went out, and prompts play in order.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.transport import PlayoutState
from ivr.websocket.playout import WebSocketPlayout
from ivr.websocket.protocol import QUEUE_MAX, MediaStart, decode_event
from ivr.websocket.session import SessionConfig, WebSocketMediaSession

from .fake_chan import ChanWebsocketModel, ModelSocket, settle

FRAME = 640


@dataclass(frozen=True)
class Play:
    samples: int


@dataclass(frozen=True)
class Tick:
    count: int


@dataclass(frozen=True)
class Clear:
    pass


OPS = st.lists(
    st.one_of(
        st.builds(Play, st.integers(0, 1400 * FRAME // 2)),
        st.builds(Tick, st.integers(1, 400)),
        st.just(Clear()),
    ),
    min_size=1,
    max_size=12,
)


async def scenario(ops: list[Play | Tick | Clear], per_message: int, credit_every: int) -> None:
    model = ChanWebsocketModel()
    sock = ModelSocket(model)
    start = decode_event(model.media_start())
    assert isinstance(start, MediaStart)
    config = SessionConfig(frames_per_message=per_message, credit_every=credit_every)
    session = WebSocketMediaSession(sock, start, shape="client", peer="t", config=config)
    session.start_reading()
    playouts: list[tuple[WebSocketPlayout, int]] = []
    cleared: set[int] = set()

    def played_of(tag: int) -> int:
        return sum(1 for f in model.played if struct.unpack_from("<h", f)[0] == tag)

    async def do_tick(count: int) -> None:
        for _ in range(count):
            sock.tick()
            await settle(6)
            for tag, (playout, frames) in enumerate(playouts, start=1):
                if playout.done and (await playout.wait()).completed:
                    assert played_of(tag) == frames, "completed before its last frame was played"

    for op in ops:
        if isinstance(op, Play):
            tag = len(playouts) + 1
            playouts.append((session.play(struct.pack("<h", tag) * op.samples), -(-op.samples * 2 // FRAME)))
        elif isinstance(op, Clear):
            cleared |= {tag for tag, (p, _) in enumerate(playouts, start=1) if not p.done}
            session.clear()
        await settle(6)
        if isinstance(op, Tick):
            await do_tick(op.count)
        queued = {struct.unpack_from("<h", f)[0] for f in model.queue if isinstance(f, bytes)}
        assert not queued & cleared, "a cleared prompt is still in Asterisk's queue"
    budget = sum(frames for _, frames in playouts) + 50
    while budget > 0 and not all(p.done for p, _ in playouts):
        await do_tick(1)
        budget -= 1
    for tag, (playout, frames) in enumerate(playouts, start=1):
        result = await playout.wait()
        if tag in cleared:
            assert result.state is PlayoutState.CLEARED
        else:
            assert result.completed
            assert played_of(tag) == frames
    order = [struct.unpack_from("<h", f)[0] for f in model.played]
    assert order == sorted(order), "prompts play in the order they were given"
    assert model.dropped_messages == 0
    assert model.max_queue_length < QUEUE_MAX
    await session.aclose()


@settings(deadline=None, max_examples=40)
@given(OPS, st.sampled_from([1, 7, 10, 50]), st.sampled_from([1, 25, 50, 200]))
def test_any_schedule_keeps_asterisks_queue_and_the_prompts_right(
    ops: list[Play | Tick | Clear], per_message: int, credit_every: int
) -> None:
    asyncio.run(scenario(ops, per_message, credit_every))
