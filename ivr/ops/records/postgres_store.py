"""Call records in PostgreSQL, shared by every instance, with a local spool for outages.

Writes (records, checkpoint flushes) go through :class:`~.postgres_writer.PostgresWriter`, one task on
psycopg's asyncio driver, so the event loop never waits on the network and an outage only fills the
spool. Lookups (load/resume a checkpoint, list, get) use a second connection, so a resume never waits
behind a burst of records, and fail at once with :class:`RecordsError` while PostgreSQL is down.
Migrations and exports use the synchronous driver on worker threads.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import IO, Any, TypeVar

import psycopg

from ivr.ops.records.checkpoints import (
    CHECKPOINT_TTL_S,
    DELETE_CHECKPOINT,
    RESUME_CHECKPOINT,
    TOUCH_CHECKPOINT,
)
from ivr.ops.records.db_thread import DbThread
from ivr.ops.records.model import CallRecord, Checkpoint, RecordsError, merge_instances
from ivr.ops.records.postgres_db import (
    PostgresDatabase,
    connect_params,
    is_connection_error,
    pg_error,
    pg_json,
)
from ivr.ops.records.postgres_writer import AConn, PostgresWriter, discard
from ivr.ops.records.reader import (
    DEFAULT_LIST_LIMIT,
    checkpoint_query,
    get_query,
    list_query,
    stale_checkpoints_query,
)
from ivr.ops.records.schema import checkpoint_from_row, dumps, record_from_row
from ivr.ops.records.spool import SPOOL_MAX_RECORDS, SpoolDatabase
from ivr.ops.records.store import RecordStore
from ivr.ops.records.urls import safe_url

log = logging.getLogger("ivr.ops.records")

T = TypeVar("T")


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
        """First wait before trying PostgreSQL again after a failure; doubles up to ``retry_max``."""
        self.retry_max = retry_max
        self._params = connect_params(url)
        self._writer: PostgresWriter | None = None
        self._spool: DbThread[SpoolDatabase] | None = None
        self._reader: AConn | None = None
        self._reader_lock = asyncio.Lock()

    @property
    def where(self) -> str:
        return safe_url(self.url)

    @property
    def is_open(self) -> bool:
        return self._writer is not None and not self._closing and self._writer.running

    @property
    def spooled(self) -> int:
        """Records in the local spool, waiting for PostgreSQL (as far as this process knows)."""
        return self._writer.spooled if self._writer else 0

    @property
    def available(self) -> bool:
        """False from a failed write until PostgreSQL answers again."""
        return self._writer.available if self._writer else False

    async def open(self) -> None:
        if self._writer is not None or self._spool is not None:
            raise RecordsError("call records store already opened")
        url = self.url

        def prepare() -> None:  # migrations and pruning, once, on a worker thread (sync driver)
            with PostgresDatabase(url) as db:
                db.prune_checkpoints(time.time() - CHECKPOINT_TTL_S)

        path, limit = self.spool_path, self.spool_max_records
        try:
            await asyncio.to_thread(prepare)
            self._spool = DbThread(
                "ivr-records-spool",
                lambda: SpoolDatabase(path, max_records=limit),
                asyncio.get_running_loop(),
            )
            await self._spool.open()
            spooled = await self._spool.submit(lambda db: db.count())
        except BaseException:
            self._closing = True
            raise
        if spooled:
            log.warning(
                "call records: %d record(s) in the spool %s from an earlier outage: writing them to %s",
                spooled,
                path,
                self.where,
            )
        self._writer = PostgresWriter(
            params=self._params,
            where=self.where,
            spool=self._spool,
            spool_path=path,
            spooled=spooled,
            checkpoints=self._checkpoints,
            timeout=self.timeout,
            retry_min=self.retry_min,
            retry_max=self.retry_max,
        )
        self._writer.start()

    async def close(self) -> None:
        writer = self._writer
        if writer is None or self._closing:
            self._closing = True
            return
        self._closing = True
        try:
            await writer.stop()
        finally:
            await discard(self._reader)
            self._reader = None
            if self._spool is not None:
                await self._spool.stop()

    async def wait_idle(self) -> None:
        """Return once nothing is queued, spooled or pending (tests, and a tidy shutdown)."""
        await self._live().wait_idle()

    # -- records -------------------------------------------------------------------------------------

    async def _write(self, record: CallRecord) -> CallRecord:
        return await self._live().write(record)

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
        self._live().flush()

    async def flush_checkpoints(self) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._live().flush(future)
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

    async def touch_checkpoints(self, call_ids: builtins.list[str]) -> None:
        now = time.time()
        params = [{"call_id": c, "instance": self.instance, "now": now} for c in call_ids]
        if not params:
            return

        async def touch(conn: AConn) -> None:
            async with conn.cursor() as cur:
                await cur.executemany(TOUCH_CHECKPOINT, params)

        await self._interactive(touch)

    async def stale_checkpoints(self, before: float, limit: int = 100) -> builtins.list[Checkpoint]:
        rows = await self._fetch(*stale_checkpoints_query(before, limit))
        return [checkpoint_from_row(row, json_text=False) for row in rows]

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
                        self._reader = await psycopg.AsyncConnection.connect(**self._params, autocommit=True)
                    return await fn(self._reader)
            except Exception as exc:
                if is_connection_error(exc):
                    await discard(self._reader)
                    self._reader = None
                    raise RecordsError(f"{self.where}: PostgreSQL unreachable: {pg_error(exc)}") from None
                if isinstance(exc, psycopg.Error):
                    raise RecordsError(f"{self.where}: {pg_error(exc)}") from None
                raise

    def _live(self) -> PostgresWriter:
        self._check_open()
        assert self._writer is not None
        return self._writer
