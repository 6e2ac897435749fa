"""The PostgreSQL store's writer: one task that owns the writing connection, and the outage spool.

It serves records and checkpoint flushes in order, committing records that queue up during a commit in
one transaction. A write that fails on the connection goes to the local spool (:mod:`.spool`, a SQLite
file on its own thread, fsynced) and the record counts as written, so calls go on. While the spool holds
anything, new records queue behind it (order is kept); the writer retries PostgreSQL with backoff and,
once it answers, replays the spool oldest first, deleting each chunk only after PostgreSQL committed
it. Records are upserts by call id, so a replay cut short and repeated writes the same rows: every
record ends up in PostgreSQL exactly once. Checkpoints are not spooled (a resume needs PostgreSQL
anyway): the newest one per live call waits in the buffer and is written when it returns.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg

from ivr.ops.records.checkpoints import UPSERT_CHECKPOINT, CheckpointBuffer
from ivr.ops.records.db_thread import DbThread
from ivr.ops.records.model import CallRecord, RecordsError
from ivr.ops.records.postgres_db import (
    UPSERT_RECORD,
    checkpoint_row,
    is_connection_error,
    merged,
    pg_error,
    record_row,
)
from ivr.ops.records.spool import SpoolDatabase, Spooled

log = logging.getLogger("ivr.ops.records")

AConn = psycopg.AsyncConnection[Any]

GROUP_COMMIT_MAX = 256
REPLAY_CHUNK = 200


class _Write:
    __slots__ = ("future", "record")

    def __init__(self, record: CallRecord, future: asyncio.Future[CallRecord]) -> None:
        self.record = record
        self.future = future


class _Flush:
    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[None] | None) -> None:
        self.future = future


_STOP = object()
_Job = _Write | _Flush | object


def _spool_append(db: SpoolDatabase, records: Sequence[CallRecord]) -> Sequence[CallRecord]:
    return db.append(records)


def _settle(
    future: asyncio.Future[Any] | None, result: Any = None, error: BaseException | None = None
) -> None:
    if future is None or future.done():
        return  # nobody waits (a cancelled caller): the work was done all the same
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


async def discard(conn: AConn | None) -> None:
    """Close a connection that failed or is no longer needed, whatever state it is in."""
    if conn is not None:
        with contextlib.suppress(Exception):
            await conn.close()


class PostgresWriter:
    """The background writer of one :class:`PostgresRecordStore` (created by its ``open``)."""

    def __init__(
        self,
        *,
        params: dict[str, Any],
        where: str,
        spool: DbThread[SpoolDatabase],
        spool_path: Path,
        spooled: int,
        checkpoints: CheckpointBuffer,
        timeout: float,
        retry_min: float,
        retry_max: float,
    ) -> None:
        self.params = params
        self.where = where
        self.spool = spool
        self.spool_path = spool_path
        self.checkpoints = checkpoints
        self.timeout = timeout
        self.retry_min = retry_min
        self.retry_max = retry_max
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._conn: AConn | None = None
        self._spooled = spooled
        self._replayed_total = 0
        self._down_since: float | None = None
        self._retry_at = 0.0
        self._backoff = retry_min
        self._idle = asyncio.Event()

    @property
    def spooled(self) -> int:
        return self._spooled

    @property
    def available(self) -> bool:
        return self._down_since is None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ivr-call-records-postgres")

    async def stop(self) -> None:
        """Write (or spool) everything queued so far, then close the connection."""
        self._queue.put_nowait(_STOP)
        try:
            if self._task is not None:
                await self._task
        finally:
            await discard(self._conn)
            self._conn = None

    def write(self, record: CallRecord) -> asyncio.Future[CallRecord]:
        future: asyncio.Future[CallRecord] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Write(record, future))
        return future

    def flush(self, future: asyncio.Future[None] | None = None) -> None:
        """Write the pending checkpoints in turn (``future``: resolved once done)."""
        self._queue.put_nowait(_Flush(future))

    async def wait_idle(self) -> None:
        """Return once nothing is queued, spooled or pending."""
        while True:
            self._idle.clear()
            if self._queue.empty() and not self._spooled and not len(self.checkpoints):
                return
            if not self.running:
                raise RecordsError(f"call records writer for {self.where} has stopped")
            await self._idle.wait()

    async def _run(self) -> None:
        pending: collections.deque[_Job] = collections.deque()
        try:
            await self._serve(pending)
        except BaseException as exc:  # a bug, or the loop going away: fail what waits, never hang it
            if not isinstance(exc, asyncio.CancelledError):
                log.exception("call records writer for %s stopped", self.where)
            while not self._queue.empty():
                pending.append(self._queue.get_nowait())
            error = RecordsError(f"call records writer for {self.where} stopped: {exc!r}")
            for job in pending:
                if isinstance(job, _Write | _Flush):
                    _settle(job.future, error=error)
            raise
        finally:
            self._idle.set()

    async def _serve(self, pending: collections.deque[_Job]) -> None:
        while True:
            if not pending:
                self._idle.set()
                job = await self._next_job(self._idle_timeout())
                if job is not None:
                    pending.append(job)
            while not self._queue.empty():
                pending.append(self._queue.get_nowait())
            if self._due():
                if self._spooled:
                    await self._replay()
                if len(self.checkpoints) and self._due():
                    await self._flush()
            if not pending:
                continue
            head = pending[0]
            if isinstance(head, _Write):
                writes: list[_Write] = []
                while pending and isinstance(pending[0], _Write) and len(writes) < GROUP_COMMIT_MAX:
                    job = pending.popleft()
                    assert isinstance(job, _Write)
                    writes.append(job)
                await self._write_batch(writes)
            elif isinstance(head, _Flush):
                pending.popleft()
                if self._due():
                    await self._flush()
                _settle(head.future)
            else:  # _STOP: everything before it is written or spooled
                if self._due() and len(self.checkpoints):
                    await self._flush()
                return

    async def _next_job(self, timeout: float | None) -> _Job | None:
        if timeout is None:
            return await self._queue.get()
        try:
            async with asyncio.timeout(timeout):
                return await self._queue.get()
        except TimeoutError:
            return None

    def _idle_timeout(self) -> float | None:
        """How long the writer may sleep: forever when nothing waits for PostgreSQL."""
        if not self._spooled and not len(self.checkpoints):
            return None
        if self._down_since is None:
            return 0.0
        return max(0.0, self._retry_at - time.monotonic())

    def _due(self) -> bool:
        """PostgreSQL is up, or it is time to try it again."""
        return self._down_since is None or time.monotonic() >= self._retry_at

    async def _write_batch(self, writes: list[_Write]) -> None:
        if self._spooled or not self._due():  # behind the spool (order), or known down
            await self._to_spool(writes)
            return
        try:
            stored = await self._upsert([w.record for w in writes])
        except Exception as exc:
            if is_connection_error(exc):
                self._went_down(exc)
                await self._to_spool(writes)
            elif len(writes) > 1:
                for write in writes:  # isolate the bad record; the others still go in
                    await self._write_batch([write])
            else:
                await self._reject_new(writes[0], exc)
            return
        self._came_up()
        for write, record in zip(writes, stored, strict=True):
            _settle(write.future, record)

    async def _upsert(self, records: list[CallRecord]) -> list[CallRecord]:
        """Write records in one transaction on the writer's connection (dropped on any failure)."""
        try:
            async with asyncio.timeout(self.timeout):
                conn = await self._writer_conn()
                stored: list[CallRecord] = []
                async with conn.transaction(), conn.cursor() as cur:
                    for record in records:
                        await cur.execute(UPSERT_RECORD, record_row(record))
                        stored.append(merged(record, await cur.fetchone()))
                return stored
        except BaseException:
            await discard(self._conn)
            self._conn = None
            raise

    async def _to_spool(self, writes: list[_Write]) -> None:
        spool = self.spool
        futures = [spool.submit_batched(_spool_append, w.record) for w in writes]  # one transaction
        results = await asyncio.gather(*futures, return_exceptions=True)
        for write, result in zip(writes, results, strict=True):
            if isinstance(result, BaseException):
                log.error("call %s: call record NOT written: %s", write.record.call_id, result)
                _settle(write.future, error=result)
            else:
                self._spooled += 1
                _settle(write.future, write.record)

    async def _reject_new(self, write: _Write, exc: BaseException) -> None:
        error = pg_error(exc)
        log.error(
            "call %s: PostgreSQL refused the call record (%s): kept in %s",
            write.record.call_id,
            error,
            self.spool_path,
        )
        try:
            await self.spool.submit(
                functools.partial(SpoolDatabase.keep_rejected, record=write.record, error=error)
            )
        except RecordsError as spool_exc:
            _settle(write.future, error=spool_exc)
            return
        _settle(write.future, error=RecordsError(f"PostgreSQL refused the record: {error}"))

    async def _replay(self) -> None:
        """Write the spool to PostgreSQL, oldest first, until it is empty or PostgreSQL fails."""
        spool = self.spool
        while True:
            try:
                entries: list[Spooled] = await spool.submit(
                    functools.partial(SpoolDatabase.peek, limit=REPLAY_CHUNK)
                )
            except RecordsError as exc:
                log.error("call records: cannot read the spool %s: %s", self.spool_path, exc)
                self._went_down(exc)  # try again after the backoff
                return
            if not entries:
                if self._replayed_total:
                    log.info(
                        "call records: %d spooled record(s) written to %s", self._replayed_total, self.where
                    )
                self._spooled = self._replayed_total = 0
                return
            readable: list[tuple[int, CallRecord]] = []
            for entry in entries:
                if entry.record is None:
                    await self._reject_spooled(entry.seq, entry.call_id, entry.error)
                else:
                    readable.append((entry.seq, entry.record))
            try:
                await self._upsert([record for _, record in readable])
                done = [seq for seq, _ in readable]
            except Exception as exc:
                if is_connection_error(exc):
                    self._went_down(exc)
                    return
                isolated = await self._replay_one_by_one(readable)
                if isolated is None:
                    return
                done = isolated
            try:
                await spool.submit(functools.partial(SpoolDatabase.remove, seqs=done))
            except RecordsError as exc:  # written, still spooled: replayed again later, harmlessly
                log.error("call records: cannot update the spool %s: %s", self.spool_path, exc)
                self._went_down(exc)
                return
            self._came_up()
            self._replayed_total += len(entries)
            self._spooled = max(0, self._spooled - len(entries))

    async def _replay_one_by_one(self, entries: list[tuple[int, CallRecord]]) -> list[int] | None:
        """Isolate the record PostgreSQL refuses; None if the connection failed meanwhile."""
        done: list[int] = []
        for seq, record in entries:
            try:
                await self._upsert([record])
            except Exception as exc:
                if is_connection_error(exc):
                    self._went_down(exc)
                    return None
                await self._reject_spooled(seq, record.call_id, f"PostgreSQL refused it: {pg_error(exc)}")
                continue
            done.append(seq)
        return done

    async def _reject_spooled(self, seq: int, call_id: str, error: str) -> None:
        log.error("call %s: spooled record not replayed (%s): kept in %s", call_id, error, self.spool_path)
        await self.spool.submit(functools.partial(SpoolDatabase.reject, seq=seq, error=error))

    async def _flush(self) -> None:
        items = self.checkpoints.take()
        if not items:
            return
        try:
            async with asyncio.timeout(self.timeout):
                conn = await self._writer_conn()
                async with conn.transaction(), conn.cursor() as cur:
                    await cur.executemany(UPSERT_CHECKPOINT, [checkpoint_row(s) for s in items])
        except Exception as exc:
            await discard(self._conn)
            self._conn = None
            if is_connection_error(exc):
                self._went_down(exc)
                self.checkpoints.restore(items)
                return
            log.error("call records: %d checkpoint(s) NOT saved: %s", len(items), pg_error(exc))
            self.checkpoints.written()
            return
        self.checkpoints.written()
        self._came_up()

    # -- connection state ----------------------------------------------------------------------------

    def _went_down(self, exc: BaseException) -> None:
        """Writes fail (PostgreSQL unreachable, or the spool unreadable): back off, then try again."""
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
            self._backoff = self.retry_min
            if not isinstance(exc, RecordsError):  # the spool's own errors are logged where they happen
                log.warning(
                    "call records: PostgreSQL at %s unreachable (%s): records are kept in %s until it returns",
                    self.where,
                    pg_error(exc),
                    self.spool_path,
                )
        else:
            self._backoff = min(self.retry_max, self._backoff * 2)
        self._retry_at = now + self._backoff

    def _came_up(self) -> None:
        if self._down_since is not None:
            log.info(
                "call records: PostgreSQL at %s answers again (down %.1f s)",
                self.where,
                time.monotonic() - self._down_since,
            )
            self._down_since = None
            self._backoff = self.retry_min

    async def _writer_conn(self) -> AConn:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = await self._connect()
        return self._conn

    async def _connect(self) -> AConn:
        return await psycopg.AsyncConnection.connect(**self.params, autocommit=True)
