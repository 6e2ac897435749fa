"""Call records: one row per finished call, and checkpoints of live calls, in SQLite or PostgreSQL.

SQLite is the embedded default (``IVR_RECORDS_PATH``); ``IVR_RECORDS_URL=postgresql://...`` shares one
database between instances. The modules, by what they hold:

* :mod:`.model`: :class:`CallRecord`, :class:`Checkpoint`, :class:`RecordsError`;
* :mod:`.redaction`: the second line of defence against secrets in records;
* :mod:`.schema`: tables and ordered migrations for both engines, rows;
* :mod:`.reader`: queries both engines answer (list, show, export);
* :mod:`.store`: :class:`RecordStore`, the asyncio interface ``ivr run`` and the runtime use;
* :mod:`.factory`: :func:`create_store` / :func:`open_database`, choosing the engine by URL;
* :mod:`.sqlite_db`, :mod:`.sqlite_store`, :mod:`.db_thread`: the SQLite engine and its writer thread;
* :mod:`.postgres_db`, :mod:`.postgres_store`, :mod:`.spool`: PostgreSQL and the local outage spool;
* :mod:`.checkpoints`: checkpoint statements and the buffer that coalesces saves.

The PostgreSQL modules need the ``postgres`` extra (psycopg) and are not imported from here.
"""

from ivr.ops.records.factory import create_store, default_spool_path, open_database
from ivr.ops.records.model import CallRecord, CallReportLike, Checkpoint, RecordsError, default_instance_id
from ivr.ops.records.reader import DEFAULT_LIST_LIMIT, RecordsReader
from ivr.ops.records.redaction import REDACTED, redact_text, redact_variables
from ivr.ops.records.schema import MIGRATIONS, SCHEMA_VERSION, Migration
from ivr.ops.records.sqlite_db import RecordsDatabase, migrate
from ivr.ops.records.sqlite_store import CallRecordStore
from ivr.ops.records.store import RecordStore
from ivr.ops.records.urls import is_postgres_url, safe_url

__all__ = [
    "DEFAULT_LIST_LIMIT",
    "MIGRATIONS",
    "REDACTED",
    "SCHEMA_VERSION",
    "CallRecord",
    "CallRecordStore",
    "CallReportLike",
    "Checkpoint",
    "Migration",
    "RecordStore",
    "RecordsDatabase",
    "RecordsError",
    "RecordsReader",
    "create_store",
    "default_instance_id",
    "default_spool_path",
    "is_postgres_url",
    "migrate",
    "open_database",
    "redact_text",
    "redact_variables",
    "safe_url",
]
