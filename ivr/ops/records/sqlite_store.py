"""The embedded default: call records in a SQLite file, written by one dedicated thread.

``await store.record(report)`` returns only after the row is committed, and the file runs in WAL mode
with ``synchronous=FULL``, so a finished call survives SIGKILL or SIGTERM of the process *and* a power
loss of the host. The price is one fsync per commit, paid on the writer thread, never on the event loop,
and amortised by group commit: records that queue up while a commit is in flight go in one transaction.
An export opens its own read connection in a worker thread (WAL lets readers run beside the writer).
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import IO

from ivr.ops.records.checkpoints import CHECKPOINT_TTL_S
from ivr.ops.records.db_thread import DbThread
from ivr.ops.records.model import CallRecord, Checkpoint, RecordsError
from ivr.ops.records.reader import DEFAULT_LIST_LIMIT
from ivr.ops.records.schema import checkpoint_lookup
from ivr.ops.records.sqlite_db import RecordsDatabase
from ivr.ops.records.store import RecordStore

log = logging.getLogger("ivr.ops.records")

WRITER_BUSY_TIMEOUT = 30.0


def _write_batch(db: RecordsDatabase, records: Sequence[CallRecord]) -> Sequence[CallRecord]:
    return db.write_records(records)


class CallRecordStore(RecordStore):
    """The call records of a running ``ivr`` in a SQLite file (see :class:`RecordStore` for the API)."""

    def __init__(self, path: str | Path, *, instance: str | None = None) -> None:
        super().__init__(instance=instance)
        self.path = Path(path).expanduser()
        self._thread: DbThread[RecordsDatabase] | None = None

    @property
    def where(self) -> str:
        return str(self.path)

    @property
    def is_open(self) -> bool:
        return self._thread is not None and not self._closing and self._thread.is_alive()

    async def open(self) -> None:
        if self._thread is not None:
            raise RecordsError("call records store already opened")
        path = self.path

        def opener() -> RecordsDatabase:
            db = RecordsDatabase(path, busy_timeout=WRITER_BUSY_TIMEOUT)
            pruned = db.prune_checkpoints(time.time() - CHECKPOINT_TTL_S)
            if pruned:
                log.info("call records: %d checkpoint(s) of calls nobody resumed deleted", pruned)
            return db

        self._thread = DbThread("ivr-call-records", opener, asyncio.get_running_loop())
        try:
            await self._thread.open()
        except BaseException:
            self._closing = True
            raise

    async def close(self) -> None:
        thread = self._thread
        if thread is None or self._closing:
            self._closing = True
            return
        self._closing = True
        if len(self._checkpoints):
            thread.post(self._flush)
        await thread.stop()

    async def _write(self, record: CallRecord) -> CallRecord:
        return await self._live().submit_batched(_write_batch, record)

    async def list(
        self,
        limit: int | None = DEFAULT_LIST_LIMIT,
        since: float | datetime | None = None,
        outcome: str | None = None,
    ) -> builtins.list[CallRecord]:
        return await self._live().submit(lambda db: db.list(limit, since, outcome))

    async def get(self, call_id: str) -> CallRecord | None:
        return await self._live().submit(lambda db: db.get(call_id))

    async def export_jsonl(
        self,
        dest: str | Path | IO[str],
        *,
        since: float | datetime | None = None,
        outcome: str | None = None,
    ) -> int:
        self._live()

        def export() -> int:
            with RecordsDatabase(self.path, create=False) as db:
                return db.export_jsonl(dest, since=since, outcome=outcome)

        return await asyncio.to_thread(export)

    # -- checkpoints ---------------------------------------------------------------------------------

    def _schedule_flush(self) -> None:
        self._live().post(self._flush)

    def _flush(self, db: RecordsDatabase) -> None:
        """On the writer thread: write every pending checkpoint in one transaction."""
        items = self._checkpoints.take()
        if not items:
            return
        try:
            db.save_checkpoints(items)
        except Exception:
            self._checkpoints.restore(items)  # written with the call's next save
            raise
        self._checkpoints.written()

    async def flush_checkpoints(self) -> None:
        await self._live().submit(self._flush)

    async def load_checkpoint(
        self, call_id: str | None = None, *, channel_id: str | None = None, linkedid: str | None = None
    ) -> Checkpoint | None:
        checkpoint_lookup(call_id, channel_id, linkedid)  # ValueError here, not on the writer thread
        return await self._live().submit(
            lambda db: db.load_checkpoint(call_id, channel_id=channel_id, linkedid=linkedid)
        )

    async def resume_checkpoint(self, checkpoint: Checkpoint) -> Checkpoint | None:
        instance = self.instance
        return await self._live().submit(lambda db: db.resume_checkpoint(checkpoint, instance))

    async def touch_checkpoints(self, call_ids: builtins.list[str]) -> None:
        instance, now, ids = self.instance, time.time(), list(call_ids)
        if ids:
            await self._live().submit(lambda db: db.touch_checkpoints(ids, instance, now))

    async def stale_checkpoints(self, before: float, limit: int = 100) -> builtins.list[Checkpoint]:
        return await self._live().submit(lambda db: db.stale_checkpoints(before, limit))

    async def discard_checkpoint(self, call_id: str) -> None:
        self._checkpoints.drop(call_id)
        await self._live().submit(lambda db: db.delete_checkpoint(call_id))

    def _live(self) -> DbThread[RecordsDatabase]:
        thread = self._thread
        if thread is None or self._closing:
            self._check_open()  # raises: not open yet, or closed
        assert thread is not None
        if not thread.is_alive():
            raise RecordsError(f"call records writer has stopped: {thread.failure!r}")
        return thread
