"""The PostgreSQL engine's shared parts: connection settings, the statements, migrations under an
advisory lock, and :class:`PostgresDatabase`, the synchronous face (``ivr calls``, exports, tests).

Driver: psycopg 3 (see pyproject.toml for why). Every connection is in autocommit mode; writes run in
explicit transactions. Connections get TCP keepalives and a TCP user timeout, so a server that vanishes
without closing its sockets is noticed in seconds rather than after the kernel's two hours.

Migrations: two instances starting at once against one database must not both migrate. An instance
that finds the schema old takes the advisory lock :data:`MIGRATION_LOCK` (``pg_advisory_lock``) and
then migrates in one transaction; the second instance waits for the lock, then finds the schema
current and does nothing. PostgreSQL runs DDL in transactions, so a failed
migration leaves the database as it was.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any, ClassVar

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import Jsonb

from ivr.ops.records.checkpoints import PRUNE_CHECKPOINTS
from ivr.ops.records.model import CallRecord, RecordsError
from ivr.ops.records.reader import RecordsReader
from ivr.ops.records.redaction import redact_text
from ivr.ops.records.schema import (
    CALL_COLUMNS,
    CALL_JSON_COLUMNS,
    CHECKPOINT_JSON_COLUMNS,
    MIGRATIONS,
    VERSION_TABLE,
    Migration,
    newer_schema_error,
    not_ours_error,
    record_params,
)
from ivr.ops.records.urls import safe_url

log = logging.getLogger("ivr.ops.records")

MIGRATION_LOCK = 0x6976_725F_7265_6373
"""The advisory lock key of migrations (``ivr_recs`` in ASCII): one migrating instance at a time."""

CONNECT_DEFAULTS: dict[str, str] = {
    "application_name": "ivr",
    "connect_timeout": "5",
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "3",
    "keepalives_count": "3",
    "tcp_user_timeout": "10000",  # ms: unacknowledged writes fail after 10 s instead of ~15 min
}
"""Applied unless the URL sets them (``?connect_timeout=2``...)."""

_UNION = (
    "(SELECT coalesce(jsonb_agg(v ORDER BY n), '[]'::jsonb) FROM (SELECT v, min(n) AS n "
    "FROM jsonb_array_elements({0}) WITH ORDINALITY AS e(v, n) GROUP BY v) AS u)"
)
_DATA_COLUMNS = [c for c in CALL_COLUMNS if c not in ("call_id", "instances", "resumed")]

UPSERT_RECORD = f"""
    WITH point AS (DELETE FROM checkpoints WHERE call_id = %(call_id)s RETURNING instances, resumes)
    INSERT INTO calls ({", ".join(CALL_COLUMNS)})
    VALUES ({", ".join(f"%({c})s" for c in CALL_COLUMNS if c not in ("instances", "resumed"))},
            {_UNION.format("coalesce((SELECT instances FROM point), '[]'::jsonb) || %(instances)s")},
            %(resumed)s OR coalesce((SELECT resumes > 0 FROM point), false))
    ON CONFLICT (call_id) DO UPDATE SET
        {", ".join(f"{c} = excluded.{c}" for c in _DATA_COLUMNS)},
        instances = {_UNION.format("calls.instances || excluded.instances")},
        resumed = calls.resumed OR excluded.resumed
    RETURNING instances, resumed
"""
"""One statement per record: merge the call's checkpoint (then delete it) and any earlier record of the
same call id, so a resumed call keeps one row listing every instance that served it. Idempotent: writing
the same record twice (a replay from the spool) leaves the same row."""

_NUL_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def connect_params(url: str) -> dict[str, Any]:
    """libpq parameters: our defaults, overridden by whatever the URL says."""
    try:
        given = conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise RecordsError(f"{safe_url(url)}: not a PostgreSQL URL: {pg_error(exc)}") from None
    return {**CONNECT_DEFAULTS, **given}


def pg_error(exc: BaseException) -> str:
    """One line, no secrets, from a driver error."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return redact_text(text)


def is_connection_error(exc: BaseException) -> bool:
    """The server is unreachable or the connection broke (spool and retry), as opposed to bad data."""
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError | OSError | TimeoutError):
        return True
    return isinstance(exc, psycopg.errors.AdminShutdown | psycopg.errors.CannotConnectNow)


def _as_is(text: Any) -> str:
    return str(text)


def pg_json(text: str) -> Jsonb:
    """JSON text as a ``jsonb`` parameter (``jsonb`` cannot hold U+0000: it becomes U+FFFD)."""
    return Jsonb(_NUL_ESCAPE.sub(r"\1\\ufffd", text), dumps=_as_is)


def pg_params(params: Mapping[str, Any], json_columns: frozenset[str]) -> dict[str, Any]:
    """Named parameters for psycopg: JSON text as ``jsonb``, NUL characters (refused by ``text``) replaced."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if key in json_columns and isinstance(value, str):
            out[key] = pg_json(value)
        elif isinstance(value, str) and "\x00" in value:
            out[key] = value.replace("\x00", "\ufffd")
        else:
            out[key] = value
    return out


def record_row(record: CallRecord) -> dict[str, Any]:
    return pg_params(record_params(record), CALL_JSON_COLUMNS)


def checkpoint_row(snapshot: Mapping[str, Any]) -> dict[str, Any]:
    return pg_params(snapshot, CHECKPOINT_JSON_COLUMNS)


def merged(record: CallRecord, returned: Sequence[Any] | None) -> CallRecord:
    """The record as stored, from the ``RETURNING instances, resumed`` of :data:`UPSERT_RECORD`."""
    if returned is None:
        return record
    return replace(record, instances=[str(i) for i in returned[0]], resumed=bool(returned[1]))


# -- migrations ------------------------------------------------------------------------------------


def migrate(
    conn: psycopg.Connection[Any], migrations: Sequence[Migration] = MIGRATIONS, *, where: str
) -> int:
    """Bring the database to ``len(migrations)`` under the advisory lock; return the version it was at.

    A database already at the target is only read. ``conn`` must be in autocommit mode.
    """
    target = len(migrations)
    found = schema_version(conn)
    if found > target:
        raise newer_schema_error(found, target)
    if found == target:
        return found
    # A session lock, taken outside the migrating transaction: a transaction that waited for a lock
    # inside itself could still see the catalog as it was before the other instance's migration.
    conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
    try:
        with conn.transaction():
            current = schema_version(conn)  # another instance may have migrated while we waited
            if current > target:
                raise newer_schema_error(current, target)
            if current == target:
                return current
            if current == 0 and _has_table(conn, "calls"):
                raise not_ours_error(where)
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
            )
            for version in range(current, target):
                for statement in migrations[version].postgres:
                    conn.execute(statement)  # no parameters: a "%" is literal
                conn.execute(
                    f"INSERT INTO {VERSION_TABLE} VALUES (%s, %s, %s)",
                    (version + 1, migrations[version].name, time.time()),
                )
    finally:
        with contextlib.suppress(psycopg.Error):  # a broken connection released it already
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
    if current:
        log.info("call records at %s: schema migrated from v%d to v%d", where, current, target)
    return current


def schema_version(conn: psycopg.Connection[Any]) -> int:
    if not _has_table(conn, VERSION_TABLE):
        return 0
    row = conn.execute(f"SELECT max(version) FROM {VERSION_TABLE}").fetchone()
    return int(row[0] or 0) if row else 0


def _has_table(conn: psycopg.Connection[Any], name: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
    return bool(row and row[0])


def connect(url: str) -> psycopg.Connection[Any]:
    """A synchronous autocommit connection, or RecordsError with one line."""
    try:
        return psycopg.connect(**connect_params(url), autocommit=True)
    except psycopg.Error as exc:
        raise RecordsError(f"{safe_url(url)}: cannot connect: {pg_error(exc)}") from None


class PostgresDatabase(RecordsReader):
    """One synchronous connection to a PostgreSQL records database, for one thread."""

    json_text: ClassVar[bool] = False

    def __init__(self, url: str, *, migrations: Sequence[Migration] = MIGRATIONS) -> None:
        self.url = url
        self._conn = connect(url)
        try:
            self.found_version = migrate(self._conn, migrations, where=self.where)
        except psycopg.Error as exc:
            self._conn.close()
            raise RecordsError(f"{self.where}: not a usable call records database: {pg_error(exc)}") from None
        except BaseException:
            self._conn.close()
            raise

    @property
    def where(self) -> str:
        return safe_url(self.url)

    @property
    def schema_version(self) -> int:
        return schema_version(self._conn)

    def write_records(self, records: Sequence[CallRecord]) -> builtins.list[CallRecord]:
        """Upsert records in one transaction (see :data:`UPSERT_RECORD`); return them as stored."""
        stored: builtins.list[CallRecord] = []
        with self._conn.transaction(), self._conn.cursor() as cur:
            for record in records:
                cur.execute(UPSERT_RECORD, record_row(record))
                stored.append(merged(record, cur.fetchone()))
        return stored

    def prune_checkpoints(self, before: float) -> int:
        """Delete checkpoints last updated before ``before`` (epoch seconds); return how many."""
        return int(self._conn.execute(PRUNE_CHECKPOINTS, {"before": before}).rowcount)

    def _rows(self, sql: str, params: Mapping[str, Any]) -> builtins.list[Sequence[Any]]:
        try:
            with self._conn.cursor() as cur:
                cur.execute(sql, params)
                return list(cur.fetchall())
        except psycopg.Error as exc:
            raise RecordsError(f"{self.where}: {pg_error(exc)}") from None

    def _stream(self, sql: str, params: Mapping[str, Any], chunk: int) -> Iterator[Sequence[Any]]:
        try:
            with self._conn.transaction(), self._conn.cursor(name="ivr_records_export") as cur:
                cur.itersize = chunk  # a server-side cursor: bounded memory on big tables
                cur.execute(sql, params)
                yield from cur
        except psycopg.Error as exc:
            raise RecordsError(f"{self.where}: {pg_error(exc)}") from None

    def close(self) -> None:
        self._conn.close()
