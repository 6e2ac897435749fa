"""``ivr run --workers 2`` against the real Asterisk: callers are spread over both worker processes (their
media channels carry the worker's tag), and a worker killed mid-call loses only its own calls, which
still get their records while nothing of theirs is left in Asterisk; the worker comes back."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
from pathlib import Path

from tests.real_asterisk import RealAsterisk

from .harness import caller_side
from .ivr_runs import IvrProcess, ivr_env, ivr_process

CALLS = 6


def worker_pids(run: IvrProcess) -> dict[int, int]:
    """Worker index -> pid, read from the supervisor's children (their command line names the worker)."""
    found: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat[1]) != run.proc.pid:
            continue
        for arg in cmdline:
            if arg.startswith(b"ivr-worker-"):
                found[int(arg.removeprefix(b"ivr-worker-"))] = int(entry.name)
    return found


def records(path: str) -> dict[str, tuple[str, str]]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return {c: (o, r) for c, o, r in db.execute("SELECT call_id, outcome, reason FROM calls")}


async def test_two_workers_share_the_calls_and_a_killed_one_leaves_nothing_behind(
    real_asterisk: RealAsterisk,
) -> None:
    env = ivr_env(real_asterisk, IVR_WORKERS="2")
    async with ivr_process(env) as run, caller_side(real_asterisk) as side:
        workers = worker_pids(run)
        assert sorted(workers) == [0, 1]
        phones = await asyncio.gather(
            *(
                side.call("ivr-in", "100", formats="slin16", variables={"IVR_APP": env["IVR_ARI_APP"]})
                for _ in range(CALLS)
            )
        )
        try:
            await asyncio.gather(*(p.leg.wait_heard("Say sales or support", timeout=20) for p in phones))
        except TimeoutError:  # say where the calls are (flaky in CI once or twice: find out why)
            found = [(c["id"], c["state"], c.get("dialplan", {})) for c in await side.ari.channels()]
            heard = [p.leg.heard_texts() for p in phones]
            raise AssertionError(
                f"no first prompt within 20 s; heard {heard}; Asterisk's channels: {found}"
            ) from None
        media = [c["id"] for c in await side.ari.channels() if c["id"].startswith("ivr-w")]
        assert {m.split("-")[1] for m in media} == {"w0", "w1"}, f"both workers have calls: {media}"

        # SIGKILL worker 0 in the middle of its calls.
        os.kill(workers[0], signal.SIGKILL)
        await run.wait_line("worker 0 exited", timeout=20)
        await run.wait_line("worker 0: restarting", timeout=20)
        # The killed worker's media channels and bridges are gone; worker 1's calls go on.
        async with asyncio.timeout(20):
            while any(c["id"].startswith("ivr-w0-") for c in await side.ari.channels()) or any(  # noqa: ASYNC110
                b["id"].startswith("ivr-w0-") for b in await side.ari.bridges()
            ):
                await asyncio.sleep(0.1)
        assert any(c["id"].startswith("ivr-w1-") for c in await side.ari.channels())
        for phone in phones:
            await phone.hangup()
        await side.wait_idle(timeout=20)
        # worker 0 is back and takes calls again
        async with asyncio.timeout(30):
            while 0 not in worker_pids(run) or worker_pids(run)[0] == workers[0]:  # noqa: ASYNC110 - /proc
                await asyncio.sleep(0.1)
        assert await run.terminate() == 0
    rows = records(env["IVR_RECORDS_PATH"])
    assert len(rows) == CALLS, "one record per call, the killed worker's calls included"
    lost = [r for o, r in rows.values() if o == "error"]
    assert lost, "the killed worker's calls are recorded as errors"
    assert all("worker 0 exited" in r for r in lost)
