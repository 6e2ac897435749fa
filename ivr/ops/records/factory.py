"""Choosing the engine: PostgreSQL when a ``postgresql://`` URL is given, else the SQLite file.

The PostgreSQL modules import psycopg, an optional dependency (``pip install 'asterisk-ivr[postgres]'``),
so they are imported here only when a URL asks for them.
"""

from __future__ import annotations

from pathlib import Path

from ivr.ops.records.model import RecordsError
from ivr.ops.records.reader import RecordsReader
from ivr.ops.records.sqlite_db import RecordsDatabase
from ivr.ops.records.sqlite_store import CallRecordStore
from ivr.ops.records.store import RecordStore
from ivr.ops.records.urls import is_postgres_url, safe_url

SPOOL_NAME = "records-spool.sqlite3"
_NO_DRIVER = "PostgreSQL call records need psycopg: pip install 'asterisk-ivr[postgres]'"


def default_spool_path(records_path: str | Path) -> Path:
    """The spool sits beside the SQLite records file (one per machine, kept across restarts)."""
    return Path(records_path).expanduser().with_name(SPOOL_NAME)


def create_store(
    *,
    path: str | Path,
    url: str | None = None,
    spool: str | Path | None = None,
    instance: str | None = None,
) -> RecordStore:
    """The store ``ivr run`` uses: PostgreSQL at ``url`` (spooling to ``spool`` during outages), or the
    SQLite file at ``path``. Nothing is opened yet (``await store.open()``)."""
    if not url:
        return CallRecordStore(path, instance=instance)
    _check_url(url)
    try:
        from ivr.ops.records.postgres_store import PostgresRecordStore
    except ImportError:
        raise RecordsError(_NO_DRIVER) from None
    return PostgresRecordStore(url, spool=spool or default_spool_path(path), instance=instance)


def open_database(*, path: str | Path, url: str | None = None, create: bool = False) -> RecordsReader:
    """A synchronous connection for one thread (``ivr calls``): PostgreSQL at ``url``, else the file at
    ``path`` (``create=False``: a missing file is an error, not an empty list)."""
    if not url:
        return RecordsDatabase(path, create=create)
    _check_url(url)
    try:
        from ivr.ops.records.postgres_db import PostgresDatabase
    except ImportError:
        raise RecordsError(_NO_DRIVER) from None
    return PostgresDatabase(url)


def _check_url(url: str) -> None:
    if not is_postgres_url(url):
        raise RecordsError(f"{safe_url(url)}: expected a postgresql:// URL")
