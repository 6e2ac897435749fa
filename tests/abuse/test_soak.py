"""Many short calls through the whole stack leave no growth in tasks, file descriptors or memory."""

from __future__ import annotations

import asyncio
import gc
import os
import tracemalloc
from pathlib import Path

from ..call.conftest import close_stack, make_stack

DATA = Path(__file__).parent / "data"
CALLS = 600
CONCURRENT = 30


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def keepalive_handlers() -> int:
    """aiohttp's server task per kept-alive HTTP connection (the ARI client's pool, capped at 100)."""
    return sum(1 for t in asyncio.all_tasks() if "RequestHandler.start" in repr(t.get_coro()))


def own_tasks() -> int:
    return len(asyncio.all_tasks()) - keepalive_handlers()


async def test_short_calls_leave_nothing_behind() -> None:
    s = await make_stack(DATA, "short", step_timeout=10.0)
    try:

        async def one() -> None:
            caller = await s.sim.place_call(args=["flow=short"])
            await s.sim.wait_for(lambda: caller.id in s.sim.destroyed, 20)

        async def batch(n: int) -> None:
            for start in range(0, n, CONCURRENT):
                await asyncio.gather(*(one() for _ in range(min(CONCURRENT, n - start))))
            await s.wait_ended(count=len(s.app.reports), timeout=20)

        def forget_simulator_history() -> None:
            # The simulator remembers every channel, event and media leg for tests to inspect; that is
            # test infrastructure, not the app: drop it before measuring.
            s.sim.destroyed.clear()
            s.sim.event_log.clear()
            s.sim.requests.clear()
            s.legs.legs.clear()

        await batch(60)  # warm up: caches, pools, lazy imports
        forget_simulator_history()
        gc.collect()
        tasks, fds, pooled = own_tasks(), open_fds(), keepalive_handlers()
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        await batch(CALLS)
        finished = len(s.app.reports)
        outcomes = {r.outcome for r in s.app.reports}
        forget_simulator_history()
        gc.collect()
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        growth = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
        assert finished == 60 + CALLS
        assert outcomes == {"hangup"}
        assert own_tasks() <= tasks
        extra_pooled = max(0, keepalive_handlers() - pooled)
        assert keepalive_handlers() <= 100
        assert open_fds() <= fds + 2 * extra_pooled + 2, (
            "only pooled HTTP connections (two ends each) may add fds"
        )
        # What may grow: the app's bounded list of recent reports (a few KB each).
        per_call = growth / CALLS
        print(f"soak: {per_call:.0f} bytes per call, tasks {own_tasks()}/{tasks}, fds {open_fds()}/{fds}")
        assert per_call < 8_000, f"{per_call:.0f} bytes kept per call"
        s.assert_clean()
    finally:
        await close_stack(s)
