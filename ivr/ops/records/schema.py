"""The records schema for both engines: tables, ordered migrations, and the row form of records and
checkpoints.

Versions: table ``schema_version`` holds one row per applied migration (``version``, ``name``,
``applied_at``); the database's version is the highest. SQLite also mirrors it in ``PRAGMA user_version``,
which is where the first ``ivr`` kept it, so an older ``ivr`` still refuses a newer file. A database at a
version higher than :data:`SCHEMA_VERSION` is refused, never guessed at.

To change the schema, append a :class:`Migration` with the statements for both engines and never edit
an existing one: databases in the field are at any earlier version.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ivr.ops.records.model import CallRecord, Checkpoint, RecordsError

VERSION_TABLE = "schema_version"

CALL_COLUMNS = (
    "call_id",
    "flow",
    "outcome",
    "reason",
    "started_at",
    "ended_at",
    "caller",
    "linkedid",
    "direction",
    "path",
    "transcript",
    "dtmf",
    "variables",
    "errors",
    "greeting_latency_ms",
    "response_latency_ms",
    "recorded_at",
    "flow_version",
    "recordings",
    "instance",
    "instances",
    "resumed",
)
"""Column order of reads and writes; PostgreSQL's upsert needs ``instances`` and ``resumed`` last."""
CALL_JSON_COLUMNS = frozenset(
    {"path", "transcript", "dtmf", "variables", "errors", "response_latency_ms", "instances", "recordings"}
)
CHECKPOINT_COLUMNS = (
    "call_id",
    "channel_id",
    "linkedid",
    "flow",
    "flow_version",
    "step",
    "variables",
    "retries",
    "state",
    "instance",
    "instances",
    "resumes",
    "seq",
    "updated_at",
)
CHECKPOINT_JSON_COLUMNS = frozenset({"variables", "retries", "state", "instances"})


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step, from version ``n`` to ``n + 1``, as statements for each engine."""

    name: str
    sqlite: tuple[str, ...]
    postgres: tuple[str, ...]


_V1 = Migration(
    name="calls table",
    sqlite=(
        """
        CREATE TABLE calls (
            call_id             TEXT PRIMARY KEY,
            flow                TEXT NOT NULL,
            outcome             TEXT NOT NULL,
            reason              TEXT NOT NULL,
            started_at          REAL NOT NULL,  -- epoch seconds
            ended_at            REAL NOT NULL,
            caller              TEXT,
            linkedid            TEXT,           -- Asterisk linkedid, joins CDR/CEL
            direction           TEXT,           -- inbound | outbound
            path                TEXT NOT NULL,  -- JSON array of step names
            transcript          TEXT NOT NULL,  -- JSON array of [speaker, text]
            dtmf                TEXT NOT NULL,  -- JSON array of keys (sensitive ones masked)
            variables           TEXT NOT NULL,  -- JSON object (sensitive ones masked)
            errors              TEXT NOT NULL,  -- JSON array of strings
            greeting_latency_ms REAL,           -- arrival to first prompt frame
            response_latency_ms TEXT NOT NULL,  -- JSON array of numbers
            recorded_at         REAL NOT NULL
        )
        """,
        "CREATE INDEX calls_started_at ON calls (started_at)",
        "CREATE INDEX calls_outcome ON calls (outcome, started_at)",
        "CREATE INDEX calls_linkedid ON calls (linkedid)",
    ),
    postgres=(
        """
        CREATE TABLE calls (
            call_id             TEXT PRIMARY KEY,
            flow                TEXT NOT NULL,
            outcome             TEXT NOT NULL,
            reason              TEXT NOT NULL,
            started_at          DOUBLE PRECISION NOT NULL,  -- epoch seconds: to_timestamp(started_at)
            ended_at            DOUBLE PRECISION NOT NULL,
            caller              TEXT,
            linkedid            TEXT,
            direction           TEXT,
            path                JSONB NOT NULL,
            transcript          JSONB NOT NULL,
            dtmf                JSONB NOT NULL,
            variables           JSONB NOT NULL,
            errors              JSONB NOT NULL,
            greeting_latency_ms DOUBLE PRECISION,
            response_latency_ms JSONB NOT NULL,
            recorded_at         DOUBLE PRECISION NOT NULL
        )
        """,
        "CREATE INDEX calls_started_at ON calls (started_at)",
        "CREATE INDEX calls_outcome ON calls (outcome, started_at)",
        "CREATE INDEX calls_linkedid ON calls (linkedid)",
    ),
)

_V2 = Migration(
    name="instances and checkpoints",
    sqlite=(
        "ALTER TABLE calls ADD COLUMN instance TEXT",
        "ALTER TABLE calls ADD COLUMN instances TEXT NOT NULL DEFAULT '[]'",
        "ALTER TABLE calls ADD COLUMN resumed INTEGER NOT NULL DEFAULT 0",
        "CREATE INDEX calls_instance ON calls (instance, started_at)",
        """
        CREATE TABLE checkpoints (
            call_id      TEXT PRIMARY KEY,
            channel_id   TEXT,
            linkedid     TEXT,
            flow         TEXT NOT NULL,
            flow_version TEXT NOT NULL,
            step         TEXT NOT NULL,
            variables    TEXT NOT NULL,     -- JSON object, no sensitive variables
            retries      TEXT NOT NULL,     -- JSON object of counters
            state        TEXT NOT NULL,     -- JSON, opaque to the store
            instance     TEXT NOT NULL,     -- the owner: only it may update the row
            instances    TEXT NOT NULL,     -- JSON array, every owner in order
            resumes      INTEGER NOT NULL DEFAULT 0,
            seq          INTEGER NOT NULL DEFAULT 1,
            created_at   REAL NOT NULL,
            updated_at   REAL NOT NULL
        )
        """,
        "CREATE INDEX checkpoints_channel_id ON checkpoints (channel_id)",
        "CREATE INDEX checkpoints_linkedid ON checkpoints (linkedid)",
        "CREATE INDEX checkpoints_updated_at ON checkpoints (updated_at)",
    ),
    postgres=(
        "ALTER TABLE calls ADD COLUMN instance TEXT",
        "ALTER TABLE calls ADD COLUMN instances JSONB NOT NULL DEFAULT '[]'",
        "ALTER TABLE calls ADD COLUMN resumed BOOLEAN NOT NULL DEFAULT false",
        "CREATE INDEX calls_instance ON calls (instance, started_at)",
        """
        CREATE TABLE checkpoints (
            call_id      TEXT PRIMARY KEY,
            channel_id   TEXT,
            linkedid     TEXT,
            flow         TEXT NOT NULL,
            flow_version TEXT NOT NULL,
            step         TEXT NOT NULL,
            variables    JSONB NOT NULL,
            retries      JSONB NOT NULL,
            state        JSONB NOT NULL,
            instance     TEXT NOT NULL,
            instances    JSONB NOT NULL,
            resumes      INTEGER NOT NULL DEFAULT 0,
            seq          BIGINT NOT NULL DEFAULT 1,
            created_at   DOUBLE PRECISION NOT NULL,
            updated_at   DOUBLE PRECISION NOT NULL
        )
        """,
        "CREATE INDEX checkpoints_channel_id ON checkpoints (channel_id)",
        "CREATE INDEX checkpoints_linkedid ON checkpoints (linkedid)",
        "CREATE INDEX checkpoints_updated_at ON checkpoints (updated_at)",
    ),
)

_V3 = Migration(
    name="flow versions and recordings",
    sqlite=(
        "ALTER TABLE calls ADD COLUMN flow_version TEXT",  # content hash of the flow the call ran on
        "ALTER TABLE calls ADD COLUMN recordings TEXT NOT NULL DEFAULT '[]'",  # JSON array of messages
    ),
    postgres=(
        "ALTER TABLE calls ADD COLUMN flow_version TEXT",
        "ALTER TABLE calls ADD COLUMN recordings JSONB NOT NULL DEFAULT '[]'",
    ),
)

MIGRATIONS: tuple[Migration, ...] = (_V1, _V2, _V3)
"""``MIGRATIONS[n]`` takes a database from schema version ``n`` to ``n + 1`` (0 is an empty database)."""

SCHEMA_VERSION = len(MIGRATIONS)


def newer_schema_error(found: int, target: int) -> RecordsError:
    return RecordsError(
        f"call records schema v{found} is newer than this ivr understands (v{target}): upgrade ivr"
    )


def not_ours_error(where: str) -> RecordsError:
    return RecordsError(f"{where}: a 'calls' table exists but no schema version: not an ivr records database")


# -- rows ------------------------------------------------------------------------------------------


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def record_params(record: CallRecord) -> dict[str, Any]:
    """A record as named parameters, JSON columns as JSON text."""
    data = record.to_dict()
    return {c: dumps(data[c]) if c in CALL_JSON_COLUMNS else data[c] for c in CALL_COLUMNS}


def record_from_row(row: Sequence[Any], *, json_text: bool) -> CallRecord:
    """``row`` in :data:`CALL_COLUMNS` order; ``json_text``: JSON columns arrive as text (SQLite)."""
    data = {
        c: (json.loads(v) if json_text and c in CALL_JSON_COLUMNS else v)
        for c, v in zip(CALL_COLUMNS, row, strict=True)
    }
    return CallRecord.from_dict(data)


def checkpoint_from_row(row: Sequence[Any], *, json_text: bool) -> Checkpoint:
    data = {
        c: (json.loads(v) if json_text and c in CHECKPOINT_JSON_COLUMNS else v)
        for c, v in zip(CHECKPOINT_COLUMNS, row, strict=True)
    }
    return Checkpoint(
        call_id=str(data["call_id"]),
        flow=str(data["flow"]),
        flow_version=str(data["flow_version"]),
        step=str(data["step"]),
        variables=dict(data["variables"] or {}),
        retries={str(k): int(v) for k, v in (data["retries"] or {}).items()},
        state=data["state"],
        channel_id=data["channel_id"],
        linkedid=data["linkedid"],
        instance=str(data["instance"]),
        instances=tuple(str(i) for i in data["instances"] or ()),
        resumes=int(data["resumes"]),
        seq=int(data["seq"]),
        updated_at=float(data["updated_at"]),
    )


def since_epoch(since: float | datetime | None) -> float | None:
    if since is None or isinstance(since, float | int):
        return since
    return since.timestamp()  # a naive datetime is local time, as everywhere in Python


def filters(since: float | datetime | None, outcome: str | None) -> tuple[str, dict[str, Any]]:
    """A ``WHERE`` clause (pyformat placeholders) and its parameters."""
    clauses: list[str] = []
    params: dict[str, Any] = {}
    start = since_epoch(since)
    if start is not None:
        clauses.append("started_at >= %(since)s")
        params["since"] = float(start)
    if outcome is not None:
        clauses.append("outcome = %(outcome)s")
        params["outcome"] = outcome
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def checkpoint_lookup(
    call_id: str | None, channel_id: str | None, linkedid: str | None
) -> tuple[str, dict[str, Any]]:
    """The ``WHERE`` clause finding one checkpoint by call id, channel id or linkedid (in that order)."""
    for column, value in (("call_id", call_id), ("channel_id", channel_id), ("linkedid", linkedid)):
        if value is not None:
            return f" WHERE {column} = %(key)s", {"key": value}
    raise ValueError("give a call id, a channel id or a linkedid")
