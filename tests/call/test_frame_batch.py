"""Caller frames reach each call's endpointer through its loop's batch (one energy step for all calls of a
loop iteration, no task or future per frame), and the calls still hear and answer as before."""

from __future__ import annotations

import asyncio
import gc
import uuid
import weakref

import pytest

from ivr.audiosocket.server import AudioSocketConfig, AudioSocketServer
from ivr.call.dialplan_app import DialplanApp
from ivr.call.flows import FlowCatalog
from ivr.call.frame_batch import loop_batch
from ivr.call.services import CallServices
from ivr.sim.caller_leg import CallerLegs

from .conftest import DATA, sim_speech


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


@pytest.mark.virtual_time
async def test_speaking_callers_are_measured_in_batches() -> None:
    app = DialplanApp(services=CallServices(flows=FlowCatalog(DATA, default="menu"), speech=sim_speech()))
    server = AudioSocketServer(AudioSocketConfig(port=0, idle_timeout=5.0), on_session=app.handle)
    batch = loop_batch()
    frames_before = batch.frames
    async with server:
        legs = CallerLegs()
        callers = [
            await legs.connect("127.0.0.1", server.port, uuid.uuid4(), "slin", f"AudioSocket-{i}")
            for i in range(3)
        ]
        for leg in callers:
            await leg.wait_heard("Say sales")
        await asyncio.gather(
            *(leg.say(word) for leg, word in zip(callers, ("sales", "support", "sales"), strict=True))
        )
        for leg, answer in zip(callers, ("Sales it is", "Support it is", "Sales it is"), strict=True):
            await leg.wait_heard(answer)
        for leg in callers:
            await leg.wait_closed()
            await leg.close()
    assert sorted(r.path[2] for r in app.reports) == ["sales", "sales", "support"]
    assert batch.frames > frames_before, "the callers' frames went through the loop's batch"
    assert len(batch) == 0, "nothing is left waiting once the calls are over"
