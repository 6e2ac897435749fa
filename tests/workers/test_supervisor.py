"""``ivr run --workers N`` against the simulated Asterisk: calls spread over real worker processes, a
worker killed mid-call loses only its call (which still gets its one record and leaves nothing in
Asterisk) and is restarted, one ``/metrics`` sums them all, and dialplan-only workers share one port.

The supervisor runs in the test's loop; the workers are real processes (``python -c``), so these tests
wait on the real clock, with timeouts only (nothing asserts on speed).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ivr.config import Settings, load_settings
from ivr.sim.ari_server import SimAsterisk
from ivr.sim.caller_leg import CallerLegs
from ivr.workers.supervisor import Supervisor
from tests.services import free_tcp_port, scratch_dir

DATA = Path(__file__).parents[1] / "call" / "data"


def settings(**extra: Any) -> Settings:
    env = {
        "IVR_ARI_USER": "ivr",
        "IVR_ARI_PASSWORD": "pw",
        "IVR_AUDIOSOCKET_LISTEN": "127.0.0.1:0",
        "IVR_FLOWS": str(DATA),
        "IVR_DEFAULT_FLOW": "menu",
        "IVR_STT": "sim-text",
        "IVR_TTS": "sim-text",
        "IVR_PROMPT_CACHE": "",
        "IVR_RECORDS_PATH": str(scratch_dir("ivr-sup-") / "calls.sqlite3"),
        "IVR_METRICS_LISTEN": f"127.0.0.1:{free_tcp_port()}",
        "IVR_SHUTDOWN_GRACE_SECONDS": "2",
    }
    env.update({k: str(v) for k, v in extra.items()})
    return load_settings(environ=env, toml_path=None)


def records(s: Settings) -> list[tuple[str, str, str]]:
    with contextlib.closing(sqlite3.connect(s.records_path)) as db:
        return db.execute("SELECT call_id, outcome, reason FROM calls ORDER BY call_id").fetchall()


@contextlib.asynccontextmanager
async def running(s: Settings, *, workers: int, no_ari: bool = False) -> AsyncIterator[Supervisor]:
    ready = asyncio.Event()
    supervisor = Supervisor(s, workers=workers, no_ari=no_ari, ready=lambda info: ready.set())
    task = asyncio.ensure_future(supervisor.run())
    try:
        done, _ = await asyncio.wait({task, asyncio.ensure_future(ready.wait())}, timeout=120,
                                     return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        if task in done:
            task.result()
        assert ready.is_set(), "the supervisor did not get ready"
        yield supervisor
    finally:
        supervisor.stop.set()
        assert await asyncio.wait_for(task, 60) == 0
    for worker in supervisor.pool.workers:
        assert worker.process is not None
        assert worker.process.returncode is not None, "every worker process has exited"


async def metrics_text(s: Settings) -> str:
    assert s.metrics_listen is not None
    async with aiohttp.ClientSession() as http, http.get(f"http://{s.metrics_listen}/metrics") as r:
        return await r.text()


def sample(text: str, name: str) -> float:
    lines = [line for line in text.splitlines() if line.startswith(name + " ") or line.startswith(name + "{")]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


async def one_call(sim: SimAsterisk, legs: CallerLegs) -> str:
    caller = await sim.place_call()
    await sim.wait_for(lambda: legs.for_caller(sim, caller.id) is not None, 20)
    leg = legs.for_caller(sim, caller.id)
    assert leg is not None
    await leg.wait_heard("Say sales", timeout=20)
    await sim.press_dtmf(caller.id, "1")
    await leg.wait_heard("Sales it is", timeout=20)
    await sim.wait_for(lambda: caller.id in sim.destroyed, 20)
    return caller.id


async def test_calls_spread_over_workers_each_with_one_record_and_one_metrics_page() -> None:
    legs = CallerLegs()
    async with SimAsterisk(username="ivr", password="pw", media_connector=legs.connect) as sim:
        s = settings(IVR_ARI_URL=sim.base_url)
        async with running(s, workers=2) as supervisor:
            callers = await asyncio.gather(*(one_call(sim, legs) for _ in range(6)))
            await asyncio.wait_for(_until(lambda: not any(supervisor.live)), 10)
            text = await metrics_text(s)
        media = [cid for cid in sim.destroyed if "-media-" in cid]
        assert {cid.split("-")[1] for cid in media} == {"w0", "w1"}, "both workers served calls"
        assert not sim.bridges
        assert [(c, o) for c, o, _ in records(s)] == [(c, "hangup") for c in sorted(callers)]
        assert text.count("\nivr_active_calls ") + text.startswith("ivr_active_calls ") == 1
        assert sample(text, "ivr_calls_total") == 6
        assert sample(text, "ivr_active_calls") == 0
        assert sample(text, "ivr_loop_lag_seconds_count") > 0


async def test_a_worker_killed_mid_call_loses_only_that_call_which_still_gets_its_record() -> None:
    legs = CallerLegs()
    async with SimAsterisk(username="ivr", password="pw", media_connector=legs.connect) as sim:
        s = settings(IVR_ARI_URL=sim.base_url)
        async with running(s, workers=2) as supervisor:
            caller = await sim.place_call()
            await sim.wait_for(lambda: legs.for_caller(sim, caller.id) is not None, 20)
            leg = legs.for_caller(sim, caller.id)
            assert leg is not None
            await leg.wait_heard("Say sales", timeout=20)
            [owner] = [i for i, calls in enumerate(supervisor.live) if caller.id in calls]
            victim = supervisor.pool.workers[owner]
            old_pid = victim.pid
            assert old_pid is not None
            os.kill(old_pid, signal.SIGKILL)
            await sim.wait_for(lambda: caller.id in sim.destroyed, 20)  # the supervisor hung it up
            await sim.wait_for(lambda: not sim.bridges, 10)  # and removed the dead worker's bridge
            assert not [c for c in sim.channels if c.startswith(f"ivr-w{owner}-")]
            await asyncio.wait_for(_until(lambda: victim.ready.is_set() and victim.pid != old_pid), 60)
            assert victim.restarts == 1
            # the instance goes on: new calls work, on either worker
            await asyncio.gather(*(one_call(sim, legs) for _ in range(2)))
            await asyncio.wait_for(_until(lambda: not any(supervisor.live)), 10)
        rows = {c: (o, r) for c, o, r in records(s)}
        assert rows[caller.id][0] == "error"
        assert f"worker {owner} exited" in rows[caller.id][1]
        assert len(rows) == 3, "one record per call, the lost one included"


async def test_dialplan_only_workers_share_the_audiosocket_port() -> None:
    port = free_tcp_port()
    s = settings(IVR_AUDIOSOCKET_LISTEN=f"127.0.0.1:{port}")
    async with running(s, workers=2, no_ari=True) as supervisor:
        pids = {w.info["pid"] for w in supervisor.pool.workers}
        assert len(pids) == 2
        legs = CallerLegs()
        calls = [
            await legs.connect("127.0.0.1", port, uuid.uuid4(), "slin", f"AudioSocket-{n}") for n in range(16)
        ]
        await asyncio.gather(*(leg.wait_heard("Say sales", timeout=20) for leg in calls))
        busy = [len(w) for w in supervisor.live]
        assert all(n > 0 for n in busy), f"the kernel spread 16 calls over both workers: {busy}"
        for leg in calls:
            await leg.send_dtmf("1")
        await asyncio.gather(*(leg.wait_closed() for leg in calls))
        for leg in calls:
            await leg.close()
        await asyncio.wait_for(_until(lambda: not any(supervisor.live)), 10)
    assert len(records(s)) == 16


async def _until(check: Any) -> None:
    while not check():  # noqa: ASYNC110 - supervisor state, no event
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("workers", [0])
def test_a_supervisor_needs_a_worker(workers: int) -> None:
    with pytest.raises(ValueError, match="at least one worker"):
        Supervisor(settings(), workers=workers)


async def test_a_worker_restarting_when_sigterm_comes_stops_with_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """It was not ready when the drain was broadcast, so it never heard of it and the supervisor waited
    the whole drain margin for it (15 s; here made longer than the test's timeout)."""
    monkeypatch.setattr("ivr.workers.supervisor.DRAIN_MARGIN", 600.0)
    legs = CallerLegs()
    async with SimAsterisk(username="ivr", password="pw", media_connector=legs.connect) as sim:
        s = settings(IVR_ARI_URL=sim.base_url, IVR_SHUTDOWN_GRACE_SECONDS="0.5")
        ready = asyncio.Event()
        supervisor = Supervisor(s, workers=2, ready=lambda info: ready.set())
        task = asyncio.ensure_future(supervisor.run())
        await asyncio.wait_for(ready.wait(), 120)
        victim = supervisor.pool.workers[0]
        old_pid = victim.pid
        assert old_pid is not None
        os.kill(old_pid, signal.SIGKILL)
        await asyncio.wait_for(_until(lambda: victim.pid not in (None, old_pid)), 60)  # respawned
        assert not victim.ready.is_set()
        supervisor.stop.set()  # SIGTERM while it starts
        assert await asyncio.wait_for(task, 60) == 0
        assert victim.process is not None
        assert victim.process.returncode == 0, "it came up during the drain, and stopped on its own"
