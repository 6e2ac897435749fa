"""A thread that owns one SQLite connection and serves an event loop's jobs in order.

SQLite connections belong to one thread, and their I/O (fsync included) must never run on the event
loop, which paces audio. The loop submits jobs (``submit``: a function of the database, awaited through
an asyncio future; ``post``: fire and forget); the thread runs them in submission order. Consecutive
jobs of one batch function (``submit_batched``) run as one call, so records that queue up while a commit
is in flight go in one transaction (group commit).
"""

from __future__ import annotations

import asyncio
import builtins
import collections
import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

from ivr.ops.records.model import RecordsError

log = logging.getLogger("ivr.ops.records")

T = TypeVar("T")
I = TypeVar("I")  # noqa: E741
R = TypeVar("R")

GROUP_COMMIT_MAX = 256


class Closable(Protocol):
    def close(self) -> None: ...


D = TypeVar("D", bound=Closable)


class _Job:
    __slots__ = ("fn", "future", "loop")

    def __init__(
        self, fn: Callable[[Any], Any], future: asyncio.Future[Any] | None, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.fn = fn
        self.future = future
        self.loop = loop


class _Item(_Job):
    """One item for a batch function (the grouping key: consecutive items of one batch run together)."""

    __slots__ = ("batch", "item")

    def __init__(
        self,
        batch: Callable[[Any, Any], Any],
        item: Any,
        future: asyncio.Future[Any],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        super().__init__(_unused, future, loop)
        self.batch = batch
        self.item = item


def _unused(db: Any) -> None:
    raise AssertionError("a batched item runs through its batch function")


_STOP = object()


def _resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return  # the awaiting task was cancelled; the work was done (or failed) all the same
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def as_records_error(exc: BaseException) -> BaseException:
    if isinstance(exc, RecordsError | asyncio.CancelledError):
        return exc
    return RecordsError(f"call records: {type(exc).__name__}: {exc}")


class DbThread(threading.Thread, Generic[D]):
    """Opens the database with ``opener`` on its own thread, then runs jobs until :meth:`stop`."""

    def __init__(self, name: str, opener: Callable[[], D], loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(name=name, daemon=True)
        self.opener = opener
        self.loop = loop
        self.opened: asyncio.Future[None] = loop.create_future()
        self.jobs: queue.SimpleQueue[_Job | object] = queue.SimpleQueue()
        self.failure: BaseException | None = None

    # -- the loop's side -----------------------------------------------------------------------------

    async def open(self) -> None:
        self.start()
        try:
            await self.opened
        except BaseException:
            await asyncio.to_thread(self.join)
            raise

    def submit(self, fn: Callable[[D], T]) -> asyncio.Future[T]:
        future: asyncio.Future[T] = self.loop.create_future()
        self.jobs.put(_Job(fn, future, self.loop))
        return future

    def submit_batched(self, batch: Callable[[D, Sequence[I]], Sequence[R]], item: I) -> asyncio.Future[R]:
        """``batch(db, items)`` returns one result per item; if it raises, each item is retried alone."""
        future: asyncio.Future[R] = self.loop.create_future()
        self.jobs.put(_Item(batch, item, future, self.loop))
        return future

    def post(self, fn: Callable[[D], object]) -> None:
        """Run ``fn`` in turn; nobody waits for it (failures are logged)."""
        self.jobs.put(_Job(fn, None, self.loop))

    async def stop(self) -> None:
        """Finish every job submitted so far, close the database and end the thread."""
        self.jobs.put(_STOP)
        await asyncio.to_thread(self.join)

    # -- the thread's side ---------------------------------------------------------------------------

    def run(self) -> None:
        db: D | None = None
        backlog: collections.deque[_Job | object] = collections.deque()
        try:
            try:
                db = self.opener()
            except BaseException as exc:
                self.failure = exc
                self._signal(self.opened, None, as_records_error(exc))
                return
            self._signal(self.opened, None, None)
            while True:
                job = backlog.popleft() if backlog else self.jobs.get()
                if job is _STOP:
                    break
                assert isinstance(job, _Job)
                if isinstance(job, _Item):
                    batch = [job]
                    while len(batch) < GROUP_COMMIT_MAX:
                        try:
                            nxt = self.jobs.get_nowait()
                        except queue.Empty:
                            break
                        if isinstance(nxt, _Item) and nxt.batch == job.batch:
                            batch.append(nxt)
                        else:
                            backlog.append(nxt)
                            break
                    self._run_batch(db, batch)
                else:
                    self._run_job(db, job)
        except BaseException as exc:  # a bug: fail whatever waits, never hang it
            self.failure = exc
            log.exception("%s: database thread stopped", self.name)
            backlog.extend(self._drain())
            for job in backlog:
                if isinstance(job, _Job):
                    self._finish(job, None, as_records_error(exc))
        finally:
            if db is not None:
                db.close()

    def _run_job(self, db: D, job: _Job) -> None:
        try:
            result = job.fn(db)
        except Exception as exc:
            if job.future is None:
                log.error("%s: %s", self.name, as_records_error(exc))
            self._finish(job, None, as_records_error(exc))
        else:
            self._finish(job, result, None)

    def _run_batch(self, db: D, batch: builtins.list[_Item]) -> None:
        try:
            results = batch[0].batch(db, [job.item for job in batch])
        except Exception as exc:
            if len(batch) == 1:
                self._finish(batch[0], None, as_records_error(exc))
                return
            for job in batch:  # isolate the bad item; the others still go in
                self._run_batch(db, [job])
            return
        for job, result in zip(batch, results, strict=True):
            self._finish(job, result, None)

    def _drain(self) -> builtins.list[_Job | object]:
        left: builtins.list[_Job | object] = []
        while True:
            try:
                left.append(self.jobs.get_nowait())
            except queue.Empty:
                return left

    @staticmethod
    def _finish(job: _Job, result: Any, error: BaseException | None) -> None:
        if job.future is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
            job.loop.call_soon_threadsafe(_resolve, job.future, result, error)

    def _signal(self, future: asyncio.Future[None], result: None, error: BaseException | None) -> None:
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(_resolve, future, result, error)
