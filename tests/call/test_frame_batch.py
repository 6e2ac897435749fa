"""Caller frames reach each call's endpointer through its loop's batch (one energy step for all calls of a
loop iteration, no task or future per frame), and the calls still hear and answer as before."""

from __future__ import annotations

import asyncio
import gc
import uuid
import weakref
from collections.abc import Callable

import pytest

from ivr.audiosocket.native import native_available
from ivr.audiosocket.server import AudioSocketConfig, AudioSocketServer
from ivr.call.dialplan_app import DialplanApp
from ivr.call.flows import FlowCatalog
from ivr.call.frame_batch import FrameIntake, loop_batch
from ivr.call.services import CallServices
from ivr.media.batch import LevelBatch
from ivr.media.vad import frame_levels
from ivr.sim.caller_leg import CallerLegs

from ..services import unavailable
from .conftest import DATA, sim_speech

NATIVE_HOW = "pip install -e . with gcc and the Python headers (apt-get install gcc python3-dev)"


def test_one_batch_per_loop_and_the_batch_does_not_keep_its_loop() -> None:
    loop = asyncio.new_event_loop()
    other = asyncio.new_event_loop()
    batch = loop_batch(loop)
    assert loop_batch(loop) is batch
    assert loop_batch(other) is not batch
    gone = weakref.ref(loop)
    loop.close()
    other.close()
    del loop, other
    gc.collect()
    assert gone() is None, "the registry and the batch hold their loop weakly"
    batch.add(lambda frame, level: None, bytes(320))  # the loop is gone: nothing to schedule on, no error


async def _menu_calls(pacer: str, words: tuple[str, ...]) -> tuple[DialplanApp, int]:
    """Dialplan calls of the menu flow, one per word said: (the app, frames the loop's batch measured)."""
    app = DialplanApp(services=CallServices(flows=FlowCatalog(DATA, default="menu"), speech=sim_speech()))
    config = AudioSocketConfig(port=0, idle_timeout=5.0, pacer=pacer)
    server = AudioSocketServer(config, on_session=app.handle)
    batch = loop_batch()
    frames_before = batch.frames
    async with server:
        assert server.pacing == pacer
        legs = CallerLegs()
        callers = [
            await legs.connect("127.0.0.1", server.port, uuid.uuid4(), "slin", f"AudioSocket-{i}")
            for i in range(len(words))
        ]
        for leg in callers:
            await leg.wait_heard("Say sales")
        await asyncio.gather(*(leg.say(word) for leg, word in zip(callers, words, strict=True)))
        for leg, word in zip(callers, words, strict=True):
            await leg.wait_heard(f"{word.capitalize()} it is")
        for leg in callers:
            await leg.wait_closed()
            await leg.close()
    assert sorted(r.path[2] for r in app.reports) == sorted(words)
    assert len(batch) == 0, "nothing is left waiting once the calls are over"
    return app, batch.frames - frames_before


@pytest.mark.virtual_time
async def test_speaking_callers_are_measured_in_batches() -> None:
    _app, batched = await _menu_calls("loop", ("sales", "support", "sales"))
    assert batched > 0, "the callers' frames went through the loop's batch"


def test_measured_frames_never_overtake_frames_still_in_the_batch() -> None:
    """A call's first frames go through the batch (read before the native thread took the socket, or
    queued before the call listened); the measured ones after them must not jump the queue."""
    scheduled: list[Callable[[], None]] = []
    batch = LevelBatch(lambda flush: scheduled.append(flush))
    got: list[tuple[int, float]] = []
    intake = FrameIntake(320, lambda frame, level: got.append((frame[0], level)), batch)
    intake.audio(bytes([1]) * 320)
    intake.audio(bytes([2]) * 640)  # two frames at once: cut into 20 ms
    intake.measured(bytes([4]) * 320, -12.5)
    intake.measured(bytes([5]) * 320, -13.5)
    assert [n for n, _ in got] == [1, 2, 2, 4, 5]
    assert got[3:] == [(4, -12.5), (5, -13.5)], "a measured level is used as it came"
    assert got[0][1] == pytest.approx(frame_levels([bytes([1]) * 320], 160)[0])
    for flush in scheduled:  # the batch's own flush, later: nothing left to deliver twice
        flush()
    assert len(got) == 5
    intake.measured(bytes([6]) * 100, -1.0)  # not 20 ms: gathered like any odd payload
    intake.measured(bytes([7]) * 220, -1.0)
    batch.flush()
    assert [n for n, _ in got[5:]] == [6]


def test_measured_frames_go_to_the_direct_consumer_and_the_batch_to_on_frame_in_order() -> None:
    """The owner may point measured 20 ms frames straight at its consumer (one call less per frame);
    frames that waited in the batch still go through ``on_frame`` first, and odd sizes are gathered."""
    scheduled: list[Callable[[], None]] = []
    batch = LevelBatch(lambda flush: scheduled.append(flush))
    got: list[tuple[str, int]] = []
    intake = FrameIntake(320, lambda frame, level: got.append(("on_frame", frame[0])), batch)
    intake.direct = lambda frame, level: got.append(("direct", frame[0]))
    intake.audio(bytes([1]) * 320)
    intake.measured(bytes([2]) * 320, -20.0)
    intake.measured(bytes([3]) * 320, -20.0)
    intake.measured(bytes([4]) * 160, -20.0)  # half a frame: gathered through the batch
    intake.measured(bytes([4]) * 160, -20.0)
    batch.flush()
    assert got == [("on_frame", 1), ("direct", 2), ("direct", 3), ("on_frame", 4)]


async def test_natively_read_callers_are_heard_without_the_batch() -> None:
    """With the native pacer reading the sockets (real time: it sleeps on the system clock), the thread
    measures each frame and the endpointer takes it straight from the drain: the callers are heard and
    answered while hardly any frame goes through the loop's batch (only those read before the hand-off)."""
    if not native_available():
        unavailable("native pacer (ivr.audiosocket._pacer)", NATIVE_HOW)
    _app, batched = await _menu_calls("native", ("sales", "support"))
    assert batched < 20, "the thread measured the frames, not the loop's batch"
