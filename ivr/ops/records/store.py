"""The records store of a running ``ivr``, whatever the engine: what ``ivr run`` and the runtime call.

::

    store = create_store(settings)          # SQLite file, or PostgreSQL when IVR_RECORDS_URL is set
    await store.open()                      # creates/migrates; RecordsError (one line) if unusable
    store.save_checkpoint(Checkpoint(...))  # at every step change: returns at once, written in ~ms
    cp = await store.load_checkpoint(channel_id=...)     # a call handed back by the dialplan
    cp = await store.resume_checkpoint(cp)  # take it over: None if another instance won the race
    await store.record(report)              # when the call ends: once committed (or spooled)
    await store.close()                     # waits for queued records, then closes

Nothing here blocks the event loop: SQLite work runs on a dedicated thread, PostgreSQL through its
asyncio driver (and its local spool on a thread). If the task awaiting ``record`` is cancelled, the
record is still written.
"""

from __future__ import annotations

import builtins
import time
from abc import ABC, abstractmethod
from datetime import datetime
from pathlib import Path
from typing import IO, Self

from ivr.ops.records.checkpoints import CheckpointBuffer
from ivr.ops.records.model import (
    CallRecord,
    CallReportLike,
    Checkpoint,
    RecordsError,
    checkpoint_snapshot,
    default_instance_id,
)
from ivr.ops.records.reader import DEFAULT_LIST_LIMIT


class RecordStore(ABC):
    """Call records and checkpoints on one engine; :func:`ivr.ops.records.create_store` picks it."""

    def __init__(self, *, instance: str | None = None) -> None:
        self.instance = instance or default_instance_id()
        """Written into every record and checkpoint: which ``ivr`` served the call."""
        self._checkpoints = CheckpointBuffer()
        self._closing = False

    @property
    @abstractmethod
    def where(self) -> str:
        """The database as an operator knows it (path, or URL without password), for messages."""

    @property
    @abstractmethod
    def is_open(self) -> bool: ...

    @abstractmethod
    async def open(self) -> None: ...

    @abstractmethod
    async def close(self) -> None:
        """Wait for every record queued so far to be committed (or spooled), then close."""

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- records -------------------------------------------------------------------------------------

    async def record(
        self,
        report: CallReportLike,
        *,
        caller: str | None = None,
        linkedid: str | None = None,
        direction: str | None = None,
    ) -> CallRecord:
        """Store one finished call; returns the record as written, once it is durable.

        The call's checkpoint is merged in (``instances``, ``resumed``) and deleted in the same
        transaction, and a record for a call id that has one already updates it: a resumed call ends
        in one record.
        """
        record = CallRecord.from_report(
            report, caller=caller, linkedid=linkedid, direction=direction, instance=self.instance
        )
        self._checkpoints.drop(record.call_id)
        return await self._write(record)

    @abstractmethod
    async def _write(self, record: CallRecord) -> CallRecord:
        """Write (or spool) one record; raise :class:`RecordsError` if the store is not open."""

    @abstractmethod
    async def list(
        self,
        limit: int | None = DEFAULT_LIST_LIMIT,
        since: float | datetime | None = None,
        outcome: str | None = None,
    ) -> builtins.list[CallRecord]:
        """Most recent first; see :meth:`RecordsReader.list`."""

    @abstractmethod
    async def get(self, call_id: str) -> CallRecord | None: ...

    @abstractmethod
    async def export_jsonl(
        self,
        dest: str | Path | IO[str],
        *,
        since: float | datetime | None = None,
        outcome: str | None = None,
    ) -> int:
        """JSONL export on its own connection and thread: calls keep being recorded meanwhile."""

    # -- checkpoints ---------------------------------------------------------------------------------

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Save a live call's state; returns at once (no I/O here), written in the background.

        Saves coalesce: only the newest state of each call is written, as soon as the writer is free
        (a commit's time, milliseconds). Raises :class:`RecordsError` if ``state`` is not JSON or the
        store is not open.
        """
        self._check_open()
        if self._checkpoints.put(checkpoint_snapshot(checkpoint, self.instance, time.time())):
            self._schedule_flush()

    @abstractmethod
    def _schedule_flush(self) -> None:
        """Have the writer take and write the pending checkpoints soon."""

    @abstractmethod
    async def flush_checkpoints(self) -> None:
        """Return once every checkpoint saved before the call is written (or the database is down)."""

    @abstractmethod
    async def load_checkpoint(
        self, call_id: str | None = None, *, channel_id: str | None = None, linkedid: str | None = None
    ) -> Checkpoint | None:
        """The checkpoint of a live call, by call id or by the channel id / linkedid."""

    @abstractmethod
    async def resume_checkpoint(self, checkpoint: Checkpoint) -> Checkpoint | None:
        """Take over the call ``checkpoint`` was loaded for, as this instance.

        Returns the checkpoint as now stored (owner: this instance, ``resumes`` + 1), or None when the
        row changed since it was read: another instance resumed the call first, or the call ended.
        """

    @abstractmethod
    async def touch_checkpoints(self, call_ids: builtins.list[str]) -> None:
        """Mark the checkpoints of the calls this process still serves as fresh: a checkpoint nobody
        touches for a while belongs to a dead process (:meth:`stale_checkpoints`)."""

    @abstractmethod
    async def stale_checkpoints(self, before: float, limit: int = 100) -> builtins.list[Checkpoint]:
        """Checkpoints not written or touched since ``before`` (epoch seconds), oldest first."""

    @abstractmethod
    async def discard_checkpoint(self, call_id: str) -> None:
        """Forget a call's checkpoint without a record (``record`` does it by itself)."""

    def _check_open(self) -> None:
        if self._closing:
            raise RecordsError(f"call records store {self.where} is closed")
        if not self.is_open:
            raise RecordsError(f"call records store {self.where} is not open (call open() first)")
