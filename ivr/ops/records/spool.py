"""The local spool: call records waiting for PostgreSQL, in arrival order, in a small SQLite file.

When a write to PostgreSQL fails, the records go here instead (committed with ``synchronous=FULL``, so
a spooled record survives SIGKILL and power loss just as an embedded record does), and the store
replays them, oldest first, when PostgreSQL is back. A spooled record leaves the spool only after
PostgreSQL committed it; a replay cut short replays it again, which is harmless because a record
is written by call id (an upsert). The spool is bounded (:data:`SPOOL_MAX_RECORDS`): past that a record
is refused with an error, which ``ivr run`` logs, rather than filling the disk.

A record PostgreSQL rejects (not a connection problem: bad data) is moved to the ``rejected`` table of
the same file, with the error, and logged, so one bad row never holds up the rest.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ivr.ops.records.model import CallRecord, RecordsError
from ivr.ops.records.sqlite_db import open_sqlite, transaction

SPOOL_MAX_RECORDS = 100_000
"""About 300 MB of typical records: hours of a busy instance's calls."""
_FORMAT = 1


@dataclass(frozen=True, slots=True)
class Spooled:
    seq: int
    call_id: str
    record: CallRecord | None
    """None when the stored JSON cannot be read back (then ``error`` says why)."""
    error: str = ""


class SpoolDatabase:
    """The spool file, for one thread (the spool's :class:`DbThread`)."""

    def __init__(self, path: str | Path, *, max_records: int = SPOOL_MAX_RECORDS) -> None:
        self.path = Path(path).expanduser()
        self.max_records = max_records
        self._conn = open_sqlite(self.path, create=True, busy_timeout=30.0, what="call records spool")
        try:
            self._init()
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise RecordsError(f"{self.path}: not a usable call records spool: {exc}") from None
        except BaseException:
            self._conn.close()
            raise

    def _init(self) -> None:
        found = int(self._conn.execute("PRAGMA user_version").fetchone()[0])
        if found > _FORMAT:
            raise RecordsError(
                f"{self.path}: spool format v{found} is newer than this ivr understands (v{_FORMAT}): upgrade ivr"
            )
        if found == _FORMAT:
            return
        with transaction(self._conn):
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS spool (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                "call_id TEXT NOT NULL, record TEXT NOT NULL, spooled_at REAL NOT NULL)"
            )
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS rejected (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                "call_id TEXT NOT NULL, record TEXT NOT NULL, error TEXT NOT NULL, rejected_at REAL NOT NULL)"
            )
            self._conn.execute(f"PRAGMA user_version = {_FORMAT}")

    def append(self, records: Sequence[CallRecord]) -> Sequence[CallRecord]:
        """Spool records in one transaction, after any already there; RecordsError when full."""
        now = time.time()
        with transaction(self._conn):
            held = self.count()
            if held + len(records) > self.max_records:
                raise RecordsError(
                    f"PostgreSQL unreachable and the local spool {self.path} is full "
                    f"({held} records): call record NOT written"
                )
            self._conn.executemany(
                "INSERT INTO spool (call_id, record, spooled_at) VALUES (?, ?, ?)",
                [(r.call_id, r.to_json(), now) for r in records],
            )
        return records

    def peek(self, limit: int) -> list[Spooled]:
        """The oldest ``limit`` spooled records."""
        rows = self._conn.execute(
            "SELECT seq, call_id, record FROM spool ORDER BY seq LIMIT ?", (limit,)
        ).fetchall()
        out: list[Spooled] = []
        for seq, call_id, text in rows:
            try:
                out.append(Spooled(int(seq), str(call_id), CallRecord.from_dict(json.loads(text))))
            except (ValueError, KeyError, TypeError) as exc:
                out.append(Spooled(int(seq), str(call_id), None, f"unreadable spooled record: {exc}"))
        return out

    def remove(self, seqs: Sequence[int]) -> None:
        """Forget records PostgreSQL has committed."""
        with transaction(self._conn):
            self._conn.executemany("DELETE FROM spool WHERE seq = ?", [(s,) for s in seqs])

    def reject(self, seq: int, error: str) -> None:
        """Move one record PostgreSQL refused to the ``rejected`` table (kept, not replayed)."""
        with transaction(self._conn):
            self._conn.execute(
                "INSERT INTO rejected (call_id, record, error, rejected_at) "
                "SELECT call_id, record, ?, ? FROM spool WHERE seq = ?",
                (error, time.time(), seq),
            )
            self._conn.execute("DELETE FROM spool WHERE seq = ?", (seq,))

    def keep_rejected(self, record: CallRecord, error: str) -> None:
        """Keep a record PostgreSQL refused on its first write (not replayed: the data is the problem)."""
        with transaction(self._conn):
            self._conn.execute(
                "INSERT INTO rejected (call_id, record, error, rejected_at) VALUES (?, ?, ?, ?)",
                (record.call_id, record.to_json(), error, time.time()),
            )

    def count(self) -> int:
        return int(self._conn.execute("SELECT count(*) FROM spool").fetchone()[0])

    def rejected(self) -> int:
        return int(self._conn.execute("SELECT count(*) FROM rejected").fetchone()[0])

    def close(self) -> None:
        self._conn.close()
