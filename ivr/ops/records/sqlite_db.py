"""The SQLite engine: one connection to a records file, for one thread (the writer thread, ``ivr calls``).

Durability: WAL mode with ``synchronous=FULL``, so the WAL is fsynced at every commit and a committed
record survives SIGKILL of the process and a power loss of the host. Migrations run in one
``BEGIN IMMEDIATE`` transaction, which also serialises two processes opening the same file at once.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import json
import logging
import os
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

from ivr.ops.records.checkpoints import (
    DELETE_CHECKPOINT,
    PRUNE_CHECKPOINTS,
    RESUME_CHECKPOINT,
    TOUCH_CHECKPOINT,
    UPSERT_CHECKPOINT,
)
from ivr.ops.records.model import CallRecord, Checkpoint, RecordsError, merge_instances
from ivr.ops.records.reader import RecordsReader
from ivr.ops.records.schema import (
    CALL_COLUMNS,
    MIGRATIONS,
    VERSION_TABLE,
    Migration,
    newer_schema_error,
    not_ours_error,
    record_params,
)

log = logging.getLogger("ivr.ops.records")

READER_BUSY_TIMEOUT = 10.0
_PLACEHOLDER = re.compile(r"%\((\w+)\)s")
_INSERT_CALL = (
    f"INSERT OR REPLACE INTO calls ({', '.join(CALL_COLUMNS)}) "
    f"VALUES ({', '.join(':' + c for c in CALL_COLUMNS)})"
)


@functools.lru_cache(maxsize=64)
def sqlite_sql(sql: str) -> str:
    """A pyformat (``%(name)s``) statement in SQLite's ``:name`` style."""
    return _PLACEHOLDER.sub(r":\1", sql).replace("%%", "%")


class RecordsDatabase(RecordsReader):
    """One SQLite connection to a records file, for use from one thread.

    ``create=False`` refuses a missing file instead of creating an empty database (for ``ivr calls``:
    a mistyped path should say so, not show "no calls").
    """

    json_text: ClassVar[bool] = True

    def __init__(
        self,
        path: str | Path,
        *,
        create: bool = True,
        busy_timeout: float = READER_BUSY_TIMEOUT,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> None:
        self.path = Path(path).expanduser()
        self._conn = open_sqlite(self.path, create=create, busy_timeout=busy_timeout, what="call records")
        try:
            self.found_version = migrate(self._conn, migrations, where=str(self.path))
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise RecordsError(f"{self.path}: not a usable call records database: {exc}") from None
        except BaseException:
            self._conn.close()
            raise

    @property
    def where(self) -> str:
        return str(self.path)

    @property
    def schema_version(self) -> int:
        return schema_version(self._conn)

    # -- writes --------------------------------------------------------------------------------------

    def write_records(self, records: Sequence[CallRecord]) -> builtins.list[CallRecord]:
        """Write records in one transaction; return them as stored.

        A second record for a call id replaces the first, keeping every instance that served the call
        (``instances``) and ``resumed``; the call's checkpoint is merged in and deleted (the call is over).
        """
        if not records:
            return []
        stored: builtins.list[CallRecord] = []
        with transaction(self._conn):
            for record in records:
                row = self._conn.execute(
                    "SELECT instances, resumed FROM calls WHERE call_id = ?", (record.call_id,)
                ).fetchone()
                point = self._conn.execute(
                    "SELECT instances, resumes FROM checkpoints WHERE call_id = ?", (record.call_id,)
                ).fetchone()
                merged = replace(
                    record,
                    instances=merge_instances(
                        json.loads(row[0]) if row else [],
                        json.loads(point[0]) if point else [],
                        record.instances,
                    ),
                    resumed=bool(record.resumed or (row and row[1]) or (point and point[1] > 0)),
                )
                self._conn.execute(sqlite_sql(DELETE_CHECKPOINT), {"call_id": record.call_id})
                self._conn.execute(_INSERT_CALL, record_params(merged))
                stored.append(merged)
        return stored

    def insert(self, records: Sequence[CallRecord]) -> None:
        """Write records in one transaction (see :meth:`write_records`)."""
        self.write_records(records)

    def save_checkpoints(self, snapshots: Iterable[Mapping[str, Any]]) -> None:
        """Upsert checkpoint snapshots (``checkpoint_snapshot``) in one transaction; rows owned by
        another instance are left alone."""
        with transaction(self._conn):
            self._conn.executemany(sqlite_sql(UPSERT_CHECKPOINT), list(snapshots))

    def resume_checkpoint(
        self, checkpoint: Checkpoint, instance: str, now: float | None = None
    ) -> Checkpoint | None:
        """Take the call over if the row is still the one ``checkpoint`` was read from; else None."""
        now = time.time() if now is None else now
        instances = merge_instances(checkpoint.instances, [instance])
        cursor = self._conn.execute(
            sqlite_sql(RESUME_CHECKPOINT),
            {
                "instance": instance,
                "instances": json.dumps(instances),
                "now": now,
                "call_id": checkpoint.call_id,
                "seq": checkpoint.seq,
                "owner": checkpoint.instance,
            },
        )
        if cursor.rowcount != 1:
            return None
        return replace(
            checkpoint,
            instance=instance,
            instances=tuple(instances),
            resumes=checkpoint.resumes + 1,
            seq=checkpoint.seq + 1,
            updated_at=now,
        )

    def delete_checkpoint(self, call_id: str) -> None:
        self._conn.execute(sqlite_sql(DELETE_CHECKPOINT), {"call_id": call_id})

    def touch_checkpoints(self, call_ids: Iterable[str], instance: str, now: float) -> None:
        """Mark the checkpoints of these calls (if ``instance`` owns them) as fresh, in one transaction."""
        params = [{"call_id": c, "instance": instance, "now": now} for c in call_ids]
        if params:
            with transaction(self._conn):
                self._conn.executemany(sqlite_sql(TOUCH_CHECKPOINT), params)

    def prune_checkpoints(self, before: float) -> int:
        """Delete checkpoints last updated before ``before`` (epoch seconds); return how many."""
        return int(self._conn.execute(sqlite_sql(PRUNE_CHECKPOINTS), {"before": before}).rowcount)

    # -- reads ---------------------------------------------------------------------------------------

    def _rows(self, sql: str, params: Mapping[str, Any]) -> builtins.list[Sequence[Any]]:
        return list(self._conn.execute(sqlite_sql(sql), params))

    def _stream(self, sql: str, params: Mapping[str, Any], chunk: int) -> Iterator[Sequence[Any]]:
        cursor = self._conn.execute(sqlite_sql(sql), params)
        try:
            while rows := cursor.fetchmany(chunk):
                yield from rows
        finally:
            cursor.close()

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._conn.execute("PRAGMA optimize")
        self._conn.close()


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` (the file's write lock, waited for up to the busy timeout) ... ``COMMIT``."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise


def _switch_to_wal(conn: sqlite3.Connection, busy_timeout: float) -> object:
    """``PRAGMA journal_mode = WAL``, retried for up to ``busy_timeout``: leaving a rollback journal needs
    the file's exclusive lock, and SQLite reports "database is locked" at once, without its busy handler,
    while another process opening the same file holds a lock (several workers starting together)."""
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            return conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)  # opening a records file: startup or a worker thread, never the pacing thread


def open_sqlite(path: Path, *, create: bool, busy_timeout: float, what: str) -> sqlite3.Connection:
    """An autocommit connection in WAL mode with ``synchronous=FULL``; a new file is private (0600)."""
    if not path.exists():
        if not create:
            raise RecordsError(f"{path}: no {what} database (no such file)")
        create_private_file(path, what)
    try:
        conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=True)
    except sqlite3.Error as exc:
        raise RecordsError(f"{path}: cannot open {what}: {exc}") from None
    try:
        mode = _switch_to_wal(conn, busy_timeout)
        if str(mode).lower() != "wal":
            raise RecordsError(f"{path}: cannot switch to WAL mode (got {mode!r})")
        conn.execute("PRAGMA synchronous = FULL")
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise RecordsError(f"{path}: not a usable {what} database: {exc}") from None
    except BaseException:
        conn.close()
        raise
    return conn


def create_private_file(path: Path, what: str) -> None:
    """Records hold callers' words: create the file (and its directory) readable by the owner only.

    SQLite gives the ``-wal`` and ``-shm`` files the same permissions as the database file.
    """
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise RecordsError(f"{path}: cannot create the {what} file: {exc.strerror or exc}") from None
    os.close(fd)


# -- migrations ------------------------------------------------------------------------------------


def migrate(
    conn: sqlite3.Connection, migrations: Sequence[Migration] = MIGRATIONS, *, where: str = ""
) -> int:
    """Bring the database to ``len(migrations)`` in one transaction; return the version it was at.

    A database already at the target is only read (so a read-only file can be listed). ``conn`` must
    be in autocommit mode (``isolation_level=None``).
    """
    target = len(migrations)
    found = schema_version(conn)
    if found > target:
        raise newer_schema_error(found, target)
    if found == target:
        return found
    conn.execute("BEGIN IMMEDIATE")  # the write lock: a second process opening the file waits here
    try:
        current = schema_version(conn)  # another process may have migrated meanwhile
        if current > target:
            raise newer_schema_error(current, target)
        if current == target:
            conn.execute("COMMIT")
            return current
        if current == 0 and _has_table(conn, "calls"):
            raise not_ours_error(where or "database")
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
        )
        now = time.time()
        for version in range(1, current + 1):  # applied before the table existed (PRAGMA user_version)
            conn.execute(
                f"INSERT OR IGNORE INTO {VERSION_TABLE} VALUES (?, ?, ?)",
                (version, migrations[version - 1].name, now),
            )
        for version in range(current, target):
            for statement in migrations[version].sqlite:
                conn.execute(statement)
            conn.execute(
                f"INSERT INTO {VERSION_TABLE} VALUES (?, ?, ?)", (version + 1, migrations[version].name, now)
            )
        conn.execute(f"PRAGMA user_version = {int(target)}")
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    if current:
        log.info("call records at %s: schema migrated from v%d to v%d", where, current, target)
    return current


def schema_version(conn: sqlite3.Connection) -> int:
    """The highest of ``PRAGMA user_version`` and the version table's rows."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if _has_table(conn, VERSION_TABLE):
        row = conn.execute(f"SELECT max(version) FROM {VERSION_TABLE}").fetchone()
        version = max(version, int(row[0] or 0))
    return version


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone()
    return row is not None
