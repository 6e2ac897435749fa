"""The supervisor's worker processes: started, watched, restarted, stopped.

A :class:`WorkerPool` owns ``size`` child processes started through :func:`ivr.ipc.spawn`, each with
its own message channel. A worker that exits unexpectedly is reported to ``on_exit`` (which settles the
calls it had) and started again after a backoff that grows while it keeps crashing (so a worker that
dies at startup cannot spin the CPU) and resets once a worker has stayed up. Nothing here knows what a
worker does: the messages are the caller's business.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ivr.ipc import Channel, Message, spawn

log = logging.getLogger(__name__)

READY_TIMEOUT = 180.0
"""A worker loads flows, engines and models before it says ready."""
BACKOFF_INITIAL = 0.5
BACKOFF_MAX = 10.0
STABLE_AFTER = 30.0
"""A worker that stayed up this long resets its crash backoff."""

MessageHandler = Callable[[int, Message], None]
ExitHandler = Callable[[int, int | None], Awaitable[None]]


@dataclass
class Worker:
    index: int
    process: asyncio.subprocess.Process | None = None
    channel: Channel | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    info: dict[str, Any] = field(default_factory=dict)
    """What the worker said in its ``("ready", info)`` message."""
    started_at: float = 0.0
    restarts: int = 0
    backoff: float = BACKOFF_INITIAL
    task: asyncio.Task[None] | None = None
    expected_exit: bool = False

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def send(self, message: Message) -> bool:
        if self.channel is None or not self.ready.is_set():
            return False
        self.channel.send(message)
        return True


class WorkerPool:
    """``size`` workers running ``entry`` (``module:function``, see :func:`ivr.ipc.spawn`) with ``args(i)``."""

    def __init__(
        self,
        size: int,
        entry: str,
        args: Callable[[int], Any],
        *,
        on_message: MessageHandler,
        on_exit: ExitHandler,
        greeting: Callable[[int], Message] | None = None,
        name: str = "ivr-worker",
    ) -> None:
        if size < 1:
            raise ValueError("at least one worker")
        self.entry = entry
        self.args = args
        self.on_message = on_message
        self.on_exit = on_exit
        self.greeting = greeting
        """The first message each (re)started worker gets: its configuration, secrets included (a
        command line would show them to every user of the machine)."""
        self.name = name
        self.workers = [Worker(i) for i in range(size)]
        self._closing = False
        self._start_failed: asyncio.Future[None] | None = None

    async def start(self) -> None:
        """Start every worker and wait until all are ready; a worker that exits first fails the start."""
        self._start_failed = asyncio.get_running_loop().create_future()
        for worker in self.workers:
            worker.task = asyncio.ensure_future(self._run(worker))
        all_ready: asyncio.Future[Any] = asyncio.ensure_future(
            asyncio.gather(*(w.ready.wait() for w in self.workers))
        )
        failed: asyncio.Future[Any] = self._start_failed
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                await asyncio.wait([all_ready, failed], return_when=asyncio.FIRST_COMPLETED)
        finally:
            all_ready.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await all_ready
        if self._start_failed.done():
            raise self._start_failed.exception() or RuntimeError("a worker failed to start")
        self._start_failed.cancel()

    def send(self, index: int, message: Message) -> bool:
        return self.workers[index].send(message)

    def broadcast(self, message: Message) -> None:
        for worker in self.workers:
            worker.send(message)

    @property
    def all_ready(self) -> bool:
        return all(w.ready.is_set() for w in self.workers)

    async def _run(self, worker: Worker) -> None:
        while not self._closing:
            worker.started_at = time.monotonic()
            process, channel = await spawn(
                self.entry, self.args(worker.index), name=f"{self.name}-{worker.index}"
            )
            worker.process, worker.channel = process, channel
            if self.greeting is not None:
                channel.send(self.greeting(worker.index))
            await self._read(worker, channel)
            worker.ready.clear()
            code = await process.wait()
            channel.close()
            if self._closing or worker.expected_exit:
                return
            starting = self._start_failed
            if starting is not None and not starting.done() and not worker.info:
                starting.set_exception(
                    RuntimeError(f"worker {worker.index} exited with code {code} while starting")
                )
                return
            up = time.monotonic() - worker.started_at
            worker.backoff = BACKOFF_INITIAL if up >= STABLE_AFTER else min(worker.backoff * 2, BACKOFF_MAX)
            worker.restarts += 1
            log.error(
                "worker %d (pid %s) exited with code %s after %.1f s", worker.index, process.pid, code, up
            )
            try:
                await self.on_exit(worker.index, code)
            except Exception:
                log.exception("worker %d: settling its calls failed", worker.index)
            delay = BACKOFF_INITIAL if up >= STABLE_AFTER else worker.backoff
            log.info("worker %d: restarting in %.1f s", worker.index, delay)
            await asyncio.sleep(delay)

    async def _read(self, worker: Worker, channel: Channel) -> None:
        while (message := await channel.read()) is not None:
            if message[0] == "ready":
                worker.info = dict(message[1]) if len(message) > 1 else {}
                worker.ready.set()
            try:
                self.on_message(worker.index, message)
            except Exception:
                log.exception("worker %d: handling %s failed", worker.index, message[0])

    async def stop(self, timeout: float = 10.0) -> None:
        """Ask every worker to stop (``("stop",)``), wait ``timeout``, then kill what is left."""
        self._closing = True
        for worker in self.workers:
            worker.expected_exit = True
            if worker.channel is not None:
                worker.channel.send(("stop",))
        processes = [
            w.process for w in self.workers if w.process is not None and w.process.returncode is None
        ]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await asyncio.gather(*(p.wait() for p in processes))
        for process in processes:
            if process.returncode is None:
                log.warning("worker pid %d did not stop in %g s: killing it", process.pid, timeout)
                process.kill()
                await process.wait()
        for worker in self.workers:
            if worker.task is not None:
                worker.task.cancel()
        await asyncio.gather(*(w.task for w in self.workers if w.task is not None), return_exceptions=True)
        for worker in self.workers:
            if worker.channel is not None:
                worker.channel.close()
