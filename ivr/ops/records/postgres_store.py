"""Call records in PostgreSQL, shared by every instance, with a local spool for outages.

One background task owns the writing connection (psycopg's asyncio driver: the event loop never waits
on the network) and serves records and checkpoint flushes in order, committing records that queue up
during a commit in one transaction. Lookups (load/resume a checkpoint, list, get) use a second
connection, so a resume never waits behind a burst of records.

PostgreSQL down: a write that fails on the connection goes to the local spool (:mod:`.spool`, a SQLite
file on its own thread, fsynced), and ``record`` returns as soon as the spool has it, so calls go on.
While the spool holds anything, new records queue behind it (order is kept); the writer retries with
backoff and, once PostgreSQL answers, replays the spool oldest first, deleting each chunk only after
PostgreSQL committed it. Records are upserts by call id, so a replay cut short and repeated writes the
same rows: every record ends up in PostgreSQL exactly once. Checkpoints are not spooled (a resume needs
PostgreSQL anyway): the newest one per live call waits in memory and is written when it returns.
"""

from __future__ import annotations

import asyncio
import builtins
import collections
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import IO, Any, TypeVar

import psycopg

from ivr.ops.records.checkpoints import (
    CHECKPOINT_TTL_S,
    DELETE_CHECKPOINT,
    RESUME_CHECKPOINT,
    UPSERT_CHECKPOINT,
)
from ivr.ops.records.db_thread import DbThread
from ivr.ops.records.model import CallRecord, Checkpoint, RecordsError, merge_instances
from ivr.ops.records.postgres_db import (
    UPSERT_RECORD,
    PostgresDatabase,
    checkpoint_row,
    connect_params,
    is_connection_error,
    merged,
    pg_error,
    pg_json,
    record_row,
)
from ivr.ops.records.reader import DEFAULT_LIST_LIMIT, checkpoint_query, get_query, list_query
from ivr.ops.records.schema import checkpoint_from_row, dumps, record_from_row
from ivr.ops.records.spool import SPOOL_MAX_RECORDS, SpoolDatabase, Spooled
from ivr.ops.records.store import RecordStore
from ivr.ops.records.urls import safe_url

log = logging.getLogger("ivr.ops.records")

T = TypeVar("T")
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
    future: asyncio.Future[T] | None, result: T | None = None, error: BaseException | None = None
) -> None:
    if future is None or future.done():
        return  # nobody waits (a cancelled caller): the work was done all the same
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)  # type: ignore[arg-type]


class PostgresRecordStore(RecordStore):
    """Call records and checkpoints in PostgreSQL (see :class:`RecordStore` for the API)."""

    def __init__(
        self,
        url: str,
        *,
        spool: str | Path,
        instance: str | None = None,
        spool_max_records: int = SPOOL_MAX_RECORDS,
        timeout: float = 10.0,
        retry_min: float = 0.5,
        retry_max: float = 5.0,
    ) -> None:
        super().__init__(instance=instance)
        self.url = url
        self.spool_path = Path(spool).expanduser()
        self.spool_max_records = spool_max_records
        self.timeout = timeout
        """Longest wait for one connect or transaction before the server counts as unreachable."""
        self.retry_min = retry_min
        self.retry_max = retry_max
        self._params = connect_params(url)
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._spool: DbThread[SpoolDatabase] | None = None
        self._writer: AConn | None = None
        self._reader: AConn | None = None
        self._reader_lock = asyncio.Lock()
        self._spooled = 0
        self._replayed_total = 0
        self._down_since: float | None = None
        self._retry_at = 0.0
        self._backoff = retry_min
        self._idle = asyncio.Event()

    @property
    def where(self) -> str:
        return safe_url(self.url)

    @property
    def is_open(self) -> bool:
        return self._task is not None and not self._closing and not self._task.done()

    @property
    def spooled(self) -> int:
        """Records in the local spool, waiting for PostgreSQL (as far as this process knows)."""
        return self._spooled

    @property
    def available(self) -> bool:
        """False from a failed write until PostgreSQL answers again."""
        return self._down_since is None

    async def open(self) -> None:
        if self._task is not None:
            raise RecordsError("call records store already opened")
        url = self.url

        def prepare() -> None:  # migrations and pruning, once, on a worker thread (sync driver)
            with PostgresDatabase(url) as db:
                db.prune_checkpoints(time.time() - CHECKPOINT_TTL_S)

        try:
            await asyncio.to_thread(prepare)
            path, limit = self.spool_path, self.spool_max_records
            spool = DbThread(
                "ivr-records-spool",
                lambda: SpoolDatabase(path, max_records=limit),
                asyncio.get_running_loop(),
            )
            await spool.open()
        except BaseException:
            self._closing = True
            raise
        self._spool = spool
        self._spooled = await spool.submit(lambda db: db.count())
        if self._spooled:
            log.warning(
                "call records: %d record(s) in the spool %s from an earlier outage: writing them to %s",
                self._spooled,
                self.spool_path,
                self.where,
            )
        self._task = asyncio.create_task(self._run(), name="ivr-call-records-postgres")

    async def close(self) -> None:
        task = self._task
        if task is None or self._closing:
            self._closing = True
            return
        self._closing = True
        self._queue.put_nowait(_STOP)
        try:
            await task
        finally:
            for conn in (self._writer, self._reader):
                await self._discard(conn)
            self._writer = self._reader = None
            if self._spool is not None:
                await self._spool.stop()

    async def wait_idle(self) -> None:
        """Return once nothing is queued, spooled or pending (tests, and a tidy shutdown)."""
        while True:
            self._idle.clear()
            if self._queue.empty() and not self._spooled and not len(self._checkpoints):
                return
            if not self.is_open:
                raise RecordsError(f"call records store {self.where} is not open")
            await self._idle.wait()

    # -- records -------------------------------------------------------------------------------------

    async def _write(self, record: CallRecord) -> CallRecord:
        self._live()
        future: asyncio.Future[CallRecord] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Write(record, future))
        return await future

    async def list(
        self,
        limit: int | None = DEFAULT_LIST_LIMIT,
        since: float | datetime | None = None,
        outcome: str | None = None,
    ) -> builtins.list[CallRecord]:
        rows = await self._fetch(*list_query(limit, since, outcome))
        return [record_from_row(row, json_text=False) for row in rows]

    async def get(self, call_id: str) -> CallRecord | None:
        rows = await self._fetch(*get_query(call_id))
        return record_from_row(rows[0], json_text=False) if rows else None

    async def export_jsonl(
        self,
        dest: str | Path | IO[str],
        *,
        since: float | datetime | None = None,
        outcome: str | None = None,
    ) -> int:
        self._live()
        url = self.url

        def export() -> int:
            with PostgresDatabase(url) as db:
                return db.export_jsonl(dest, since=since, outcome=outcome)

        return await asyncio.to_thread(export)

    # -- checkpoints ---------------------------------------------------------------------------------

    def _schedule_flush(self) -> None:
        self._queue.put_nowait(_Flush(None))

    async def flush_checkpoints(self) -> None:
        self._live()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Flush(future))
        await future

    async def load_checkpoint(
        self, call_id: str | None = None, *, channel_id: str | None = None, linkedid: str | None = None
    ) -> Checkpoint | None:
        rows = await self._fetch(*checkpoint_query(call_id, channel_id, linkedid))
        return checkpoint_from_row(rows[0], json_text=False) if rows else None

    async def resume_checkpoint(self, checkpoint: Checkpoint) -> Checkpoint | None:
        instances = merge_instances(checkpoint.instances, [self.instance])
        now = time.time()
        params = {
            "instance": self.instance,
            "instances": pg_json(dumps(instances)),
            "now": now,
            "call_id": checkpoint.call_id,
            "seq": checkpoint.seq,
            "owner": checkpoint.instance,
        }

        async def update(conn: AConn) -> int:
            cur = await conn.execute(RESUME_CHECKPOINT, params)
            return cur.rowcount

        if await self._interactive(update) != 1:
            return None
        return replace(
            checkpoint,
            instance=self.instance,
            instances=tuple(instances),
            resumes=checkpoint.resumes + 1,
            seq=checkpoint.seq + 1,
            updated_at=now,
        )

    async def discard_checkpoint(self, call_id: str) -> None:
        self._checkpoints.drop(call_id)

        async def delete(conn: AConn) -> None:
            await conn.execute(DELETE_CHECKPOINT, {"call_id": call_id})

        await self._interactive(delete)

    # -- lookups on their own connection ------------------------------------------------------------

    async def _fetch(self, sql: str, params: dict[str, Any]) -> builtins.list[tuple[Any, ...]]:
        async def rows(conn: AConn) -> builtins.list[tuple[Any, ...]]:
            cur = await conn.execute(sql, params)
            return list(await cur.fetchall())

        return await self._interactive(rows)

    async def _interactive(self, fn: Callable[[AConn], Awaitable[T]]) -> T:
        self._live()
        async with self._reader_lock:
            try:
                async with asyncio.timeout(self.timeout):
                    if self._reader is None or self._reader.closed:
                        self._reader = await self._connect()
                    return await fn(self._reader)
            except Exception as exc:
                if is_connection_error(exc):
                    await self._discard(self._reader)
                    self._reader = None
                    raise RecordsError(f"{self.where}: PostgreSQL unreachable: {pg_error(exc)}") from None
                if isinstance(exc, psycopg.Error):
                    raise RecordsError(f"{self.where}: {pg_error(exc)}") from None
                raise

    # -- the writer task -----------------------------------------------------------------------------

    async def _run(self) -> None:
        pending: collections.deque[_Job] = collections.deque()
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
                if len(self._checkpoints) and self._due():
                    await self._flush()
            if not pending:
                continue
            head = pending[0]
            if isinstance(head, _Write):
                writes: builtins.list[_Write] = []
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
                if self._due() and len(self._checkpoints):
                    await self._flush()
                self._idle.set()
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
        if not self._spooled and not len(self._checkpoints):
            return None
        if self._down_since is None:
            return 0.0
        return max(0.0, self._retry_at - time.monotonic())

    def _due(self) -> bool:
        """PostgreSQL is up, or it is time to try it again."""
        return self._down_since is None or time.monotonic() >= self._retry_at

    async def _write_batch(self, writes: builtins.list[_Write]) -> None:
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

    async def _upsert(self, records: builtins.list[CallRecord]) -> builtins.list[CallRecord]:
        """Write records in one transaction on the writer's connection (dropped on any failure)."""
        try:
            async with asyncio.timeout(self.timeout):
                conn = await self._writer_conn()
                stored: builtins.list[CallRecord] = []
                async with conn.transaction(), conn.cursor() as cur:
                    for record in records:
                        await cur.execute(UPSERT_RECORD, record_row(record))
                        stored.append(merged(record, await cur.fetchone()))
                return stored
        except BaseException:
            await self._discard(self._writer)
            self._writer = None
            raise

    async def _to_spool(self, writes: builtins.list[_Write]) -> None:
        spool = self._spool
        assert spool is not None
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
        assert self._spool is not None
        try:
            await self._spool.submit(
                functools.partial(SpoolDatabase.keep_rejected, record=write.record, error=error)
            )
        except RecordsError as spool_exc:
            _settle(write.future, error=spool_exc)
            return
        _settle(write.future, error=RecordsError(f"PostgreSQL refused the record: {error}"))

    async def _replay(self) -> None:
        """Write the spool to PostgreSQL, oldest first, until it is empty or PostgreSQL fails."""
        spool = self._spool
        assert spool is not None
        while True:
            entries: builtins.list[Spooled] = await spool.submit(
                functools.partial(SpoolDatabase.peek, limit=REPLAY_CHUNK)
            )
            if not entries:
                if self._replayed_total:
                    log.info(
                        "call records: %d spooled record(s) written to %s", self._replayed_total, self.where
                    )
                self._spooled = self._replayed_total = 0
                return
            readable: builtins.list[tuple[int, CallRecord]] = []
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
            await spool.submit(functools.partial(SpoolDatabase.remove, seqs=done))
            self._came_up()
            self._replayed_total += len(entries)
            self._spooled = max(0, self._spooled - len(entries))

    async def _replay_one_by_one(
        self, entries: builtins.list[tuple[int, CallRecord]]
    ) -> builtins.list[int] | None:
        """Isolate the record PostgreSQL refuses; None if the connection failed meanwhile."""
        done: builtins.list[int] = []
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
        assert self._spool is not None
        await self._spool.submit(functools.partial(SpoolDatabase.reject, seq=seq, error=error))

    async def _flush(self) -> None:
        items = self._checkpoints.take()
        if not items:
            return
        try:
            async with asyncio.timeout(self.timeout):
                conn = await self._writer_conn()
                async with conn.transaction(), conn.cursor() as cur:
                    await cur.executemany(UPSERT_CHECKPOINT, [checkpoint_row(s) for s in items])
        except Exception as exc:
            await self._discard(self._writer)
            self._writer = None
            if is_connection_error(exc):
                self._went_down(exc)
                self._checkpoints.restore(items)
                return
            log.error("call records: %d checkpoint(s) NOT saved: %s", len(items), pg_error(exc))
            self._checkpoints.written()
            return
        self._checkpoints.written()
        self._came_up()

    # -- connection state ----------------------------------------------------------------------------

    def _went_down(self, exc: BaseException) -> None:
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
            self._backoff = self.retry_min
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
        if self._writer is None or self._writer.closed or self._writer.broken:
            self._writer = await self._connect()
        return self._writer

    async def _connect(self) -> AConn:
        return await psycopg.AsyncConnection.connect(**self._params, autocommit=True)

    @staticmethod
    async def _discard(conn: AConn | None) -> None:
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    def _live(self) -> None:
        self._check_open()
