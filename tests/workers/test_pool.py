"""Worker processes: all ready before the start returns, a crashed worker is settled and replaced,
stop leaves no process behind, and a worker that cannot start fails the start with one clear error."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

from ivr.ipc import Message
from ivr.workers import pool as pool_module
from ivr.workers.pool import WorkerPool

ENTRY = "tests.workers.toy_worker:main"


class Recorder:
    def __init__(self) -> None:
        self.messages: list[tuple[int, Message]] = []
        self.exits: list[tuple[int, int | None]] = []
        self.changed = asyncio.Event()

    def message(self, index: int, message: Message) -> None:
        self.messages.append((index, message))
        self.changed.set()

    async def exit(self, index: int, code: int | None) -> None:
        self.exits.append((index, code))
        self.changed.set()

    async def until(self, check: Any, timeout: float = 20.0) -> None:
        async with asyncio.timeout(timeout):
            while not check():
                self.changed.clear()
                await self.changed.wait()


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_workers_start_talk_crash_restart_and_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pool_module, "BACKOFF_INITIAL", 0.05)
    rec = Recorder()
    pool = WorkerPool(2, ENTRY, lambda i: {"index": i}, on_message=rec.message, on_exit=rec.exit)
    await pool.start()
    try:
        assert pool.all_ready
        pids = [w.pid for w in pool.workers]
        assert [w.info["index"] for w in pool.workers] == [0, 1]
        assert pool.send(1, ("hello", 42))
        await rec.until(lambda: (1, ("echo", "hello", 42)) in rec.messages)

        pool.send(0, ("crash",))
        await rec.until(lambda: rec.exits == [(0, 9)])
        await rec.until(lambda: pool.workers[0].ready.is_set() and pool.workers[0].pid != pids[0])
        assert pool.workers[0].restarts == 1
        assert pool.workers[1].pid == pids[1]  # the other worker was not touched
        assert pids[0] is not None
        assert gone(pids[0])
    finally:
        await pool.stop()
    assert all(gone(pid) for pid in [w.pid for w in pool.workers] if pid is not None)
    assert len(rec.exits) == 1  # a requested stop is not a crash


async def test_a_worker_that_cannot_start_fails_the_start() -> None:
    rec = Recorder()
    pool = WorkerPool(
        1, ENTRY, lambda i: {"index": i, "fail_at_start": True}, on_message=rec.message, on_exit=rec.exit
    )
    with pytest.raises(RuntimeError, match="worker 0 exited with code 3 while starting"):
        await pool.start()
    await pool.stop()
