"""Flow engines decide on the process's engine thread, never on the loop that paces the audio: a
template's rendering (bounded to a few ms of work) cannot hold every call's frames up."""

from __future__ import annotations

import concurrent.futures
import threading

import pytest

from ivr.flow.engine import FlowEngine

from .conftest import DATA, close_stack, make_stack

pytestmark = pytest.mark.virtual_time


async def test_every_engine_decision_runs_on_the_engine_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    threads: set[str] = set()
    original = FlowEngine.handle

    def recording(self: FlowEngine, *args: object, **kwargs: object) -> object:
        threads.add(threading.current_thread().name)
        return original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(FlowEngine, "handle", recording)
    executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ivr-engine")
    s = await make_stack(DATA, "menu", engine_executor=executor)
    try:
        caller = await s.sim.place_call()
        leg = await s.leg(caller.id)
        await leg.wait_heard("Say sales")
        await s.sim.press_dtmf(caller.id, "1")
        await leg.wait_heard("Sales it is")
        await s.wait_ended()
        [report] = s.app.reports
        assert report.path[:3] == ["hello", "main", "sales"]
    finally:
        await close_stack(s)
        executor.shutdown()
    assert threads, "the engine decided"
    assert all(name.startswith("ivr-engine") for name in threads), threads
