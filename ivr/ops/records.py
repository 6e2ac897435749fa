"""Call records: one row per finished call in an embedded SQLite database.

Durability: ``await store.record(report)`` returns only after the row is committed, and the database
runs in WAL mode with ``synchronous=FULL``, so the WAL is fsynced at every commit. A finished call
therefore survives a crash, SIGKILL or SIGTERM of the process *and* a power loss or kernel panic of
the host. ``synchronous=NORMAL`` would survive process crashes only (the last commits can roll back on
power loss); the price of FULL is one fsync per finished call (a few calls per second at 500
concurrent calls), paid on the writer thread, never on the event loop, and amortised by group
commit: records that queue up while a commit is in flight are written in one transaction.

Threads: SQLite connections belong to one thread. :class:`RecordsDatabase` is the synchronous core
(used as is by ``ivr calls``); :class:`CallRecordStore` is the asyncio face used by ``ivr run``: one
dedicated thread owns the writing connection and serves every write and point read in order; an
export opens its own read connection in a worker thread (WAL lets readers run beside the writer).

What is stored: only what :class:`ivr.call.runtime.CallReport` already holds, which the engine has
masked (sensitive captures and copies of them in ``variables`` and ``transcript``, keys pressed in
sensitive steps as ``•`` in ``dtmf``). As a second line of defence, values that look like secrets are
redacted here too (variables named like passwords/tokens/API keys, pydantic ``SecretStr`` values,
credentials in URLs, ``token=``-style query parameters and ``Bearer`` headers in errors and reasons).

Schema: versioned with ``PRAGMA user_version``; :data:`MIGRATIONS` lists the steps from each version
to the next, applied in one transaction when a database is opened. A database written by a newer
``ivr`` is refused rather than guessed at.
"""

from __future__ import annotations

import asyncio
import builtins
import collections
import contextlib
import json
import logging
import math
import os
import queue
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

from pydantic import SecretBytes, SecretStr

if TYPE_CHECKING:
    from ivr.call.runtime import CallReport

log = logging.getLogger(__name__)

T = TypeVar("T")

REDACTED = "[redacted]"
"""What a secret-looking value is replaced with (the engine's own mask for sensitive variables)."""

DEFAULT_LIST_LIMIT = 50
_GROUP_COMMIT_MAX = 256
_WRITER_BUSY_TIMEOUT = 30.0
_READER_BUSY_TIMEOUT = 10.0

_SECRET_KEY = re.compile(r"passw(?:or)?d|passphrase|secret|token|api[_-]?key|authorization|credential", re.I)
_URL_USERINFO = re.compile(r"\b([a-z][a-z0-9+.-]*://)[^/\s@]+@", re.I)
_SECRET_PARAM = re.compile(
    r"\b((?:access_|refresh_|id_|api_?|auth_?|client_)?(?:token|key|password|passwd|secret|signature|sig)=)"
    r"[^&\s\"'#]+",
    re.I,
)
_AUTH_HEADER = re.compile(r"\b(bearer|basic)\s+[a-z0-9._~+/=-]{8,}", re.I)


class RecordsError(Exception):
    """The records database cannot be used; the message is one line an operator can act on."""


# -- the record ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One finished call as stored (and as exported, one JSON object per line)."""

    call_id: str
    flow: str
    outcome: str
    reason: str
    started_at: float
    """Epoch seconds (``time.time()``)."""
    ended_at: float
    caller: str | None = None
    """Caller number/name as the telephony side gave it (Asterisk ``caller.number``)."""
    linkedid: str | None = None
    """Asterisk's ``linkedid``: joins this record with CDR and CEL rows."""
    direction: str | None = None
    """``inbound`` or ``outbound`` (``ivr originate``), when known."""
    path: list[str] = field(default_factory=list)
    """Step names in the order the call entered them (``flow:step`` for sub-flows)."""
    transcript: list[tuple[str, str]] = field(default_factory=list)
    """(speaker, text); sensitive captures are masked by the engine."""
    dtmf: list[str] = field(default_factory=list)
    """Keys in order; keys of sensitive steps are ``•``."""
    variables: dict[str, Any] = field(default_factory=dict)
    """Final flow variables; sensitive ones are masked."""
    errors: list[str] = field(default_factory=list)
    greeting_latency_ms: float | None = None
    """Arrival of the call (StasisStart) to the first frame of the first prompt."""
    response_latency_ms: list[float] = field(default_factory=list)
    """End of each caller utterance to the first frame of the IVR's answer."""
    recorded_at: float = 0.0

    @property
    def duration_s(self) -> float:
        return max(0.0, self.ended_at - self.started_at)

    @classmethod
    def from_report(
        cls,
        report: CallReport,
        *,
        caller: str | None = None,
        linkedid: str | None = None,
        direction: str | None = None,
        now: float | None = None,
    ) -> CallRecord:
        """Build the stored form of a report, redacting anything that still looks like a secret."""
        now = time.time() if now is None else now
        started = _finite(report.started_at, now)
        ended = _finite(report.ended_at, 0.0) or now  # unanswered originates never set ended_at
        return cls(
            call_id=str(report.call_id),
            flow=str(report.flow),
            outcome=str(report.outcome),
            reason=redact_text(str(report.reason)),
            started_at=started,
            ended_at=max(ended, started),
            caller=caller,
            linkedid=linkedid,
            direction=direction,
            path=[str(p) for p in report.path],
            transcript=[(str(who), str(text)) for who, text in report.transcript],
            dtmf=[str(d) for d in report.dtmf],
            variables=redact_variables(report.variables),
            errors=[redact_text(str(e)) for e in report.errors],
            greeting_latency_ms=_optional_ms(getattr(report, "greeting_latency_ms", None)),
            response_latency_ms=[
                round(v, 3) for v in (float(x) for x in report.response_latency_ms) if math.isfinite(v)
            ],
            recorded_at=now,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with ``duration_s`` added (what ``ivr calls export`` writes per line)."""
        return {
            "call_id": self.call_id,
            "flow": self.flow,
            "outcome": self.outcome,
            "reason": self.reason,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "duration_s": round(self.duration_s, 3),
            "caller": self.caller,
            "linkedid": self.linkedid,
            "direction": self.direction,
            "path": list(self.path),
            "transcript": [[who, text] for who, text in self.transcript],
            "dtmf": list(self.dtmf),
            "variables": self.variables,
            "errors": list(self.errors),
            "greeting_latency_ms": self.greeting_latency_ms,
            "response_latency_ms": list(self.response_latency_ms),
            "recorded_at": self.recorded_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CallRecord:
        """The inverse of :meth:`to_dict` (``duration_s`` is derived and ignored)."""
        return cls(
            call_id=data["call_id"],
            flow=data["flow"],
            outcome=data["outcome"],
            reason=data["reason"],
            started_at=float(data["started_at"]),
            ended_at=float(data["ended_at"]),
            caller=data.get("caller"),
            linkedid=data.get("linkedid"),
            direction=data.get("direction"),
            path=list(data.get("path", [])),
            transcript=[(str(w), str(t)) for w, t in data.get("transcript", [])],
            dtmf=list(data.get("dtmf", [])),
            variables=dict(data.get("variables", {})),
            errors=list(data.get("errors", [])),
            greeting_latency_ms=_optional_ms(data.get("greeting_latency_ms")),
            response_latency_ms=[float(v) for v in data.get("response_latency_ms", [])],
            recorded_at=float(data.get("recorded_at", 0.0)),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))


def _optional_ms(value: Any) -> float | None:
    if value is None:
        return None
    number = _finite(value, math.nan)
    return None if math.isnan(number) else round(number, 3)


def _finite(value: float, default: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return number if math.isfinite(number) else default


def redact_text(text: str) -> str:
    """Remove credentials from free text (error messages): URL user-info, ``token=`` parameters, auth headers."""
    text = _URL_USERINFO.sub(rf"\1{REDACTED}@", text)
    text = _SECRET_PARAM.sub(rf"\1{REDACTED}", text)
    return _AUTH_HEADER.sub(rf"\1 {REDACTED}", text)


def redact_variables(variables: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON-safe copy of flow variables with secret-looking names and values redacted."""
    cleaned = _json_safe(variables, depth=0)
    return cleaned if isinstance(cleaned, dict) else {}


def _json_safe(value: Any, depth: int) -> Any:
    if isinstance(value, SecretStr | SecretBytes):
        return REDACTED
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return redact_text(value)
    if depth >= 16:
        return REDACTED  # absurd nesting: not worth the risk of storing it
    if isinstance(value, Mapping):
        return {
            str(k): (REDACTED if _SECRET_KEY.search(str(k)) else _json_safe(v, depth + 1))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_json_safe(v, depth + 1) for v in value]
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    return redact_text(str(value))


# -- schema ----------------------------------------------------------------------------------------

_COLUMNS = (
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
)
_JSON_COLUMNS = frozenset({"path", "transcript", "dtmf", "variables", "errors", "response_latency_ms"})


def _create_v1(conn: sqlite3.Connection) -> None:
    conn.execute(
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
        """
    )
    conn.execute("CREATE INDEX calls_started_at ON calls (started_at)")
    conn.execute("CREATE INDEX calls_outcome ON calls (outcome, started_at)")
    conn.execute("CREATE INDEX calls_linkedid ON calls (linkedid)")


Migration = Callable[[sqlite3.Connection], None]

MIGRATIONS: tuple[Migration, ...] = (_create_v1,)
"""``MIGRATIONS[n]`` takes a database from schema version ``n`` to ``n + 1`` (0 is an empty file).

To change the schema, append a step (e.g. ``ALTER TABLE calls ADD COLUMN ...``) and never edit an
existing one: databases in the field are at any earlier version.
"""

SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Bring the database to ``len(migrations)`` in one transaction; return the version found.

    A database already at the target is only read (so a read-only file can be listed). ``conn`` must
    be in autocommit mode (``isolation_level=None``).
    """
    target = len(migrations)
    found = _user_version(conn)
    if found > target:
        raise RecordsError(
            f"call records schema v{found} is newer than this ivr understands (v{target}): upgrade ivr"
        )
    if found == target:
        return found
    conn.execute("BEGIN IMMEDIATE")
    try:
        current = _user_version(conn)  # another process may have migrated meanwhile
        if current > target:
            raise RecordsError(
                f"call records schema v{current} is newer than this ivr understands (v{target})"
            )
        if current == 0 and _has_table(conn, "calls"):
            raise RecordsError("a 'calls' table exists but the schema version is 0: not an ivr records file")
        for version in range(current, target):
            migrations[version](conn)
        conn.execute(f"PRAGMA user_version = {int(target)}")
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    if found:
        log.info("call records: schema migrated from v%d to v%d", found, target)
    return found


def _user_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone()
    return row is not None


# -- the synchronous core -------------------------------------------------------------------------


def _since_epoch(since: float | datetime | None) -> float | None:
    if since is None or isinstance(since, float | int):
        return since
    return since.timestamp()  # a naive datetime is local time, as everywhere in Python


class RecordsDatabase:
    """One SQLite connection to a records file, for use from one thread.

    ``create=False`` refuses a missing file instead of creating an empty database (for ``ivr calls``:
    a mistyped path should say so, not show "no calls").
    """

    def __init__(
        self,
        path: str | Path,
        *,
        create: bool = True,
        busy_timeout: float = _READER_BUSY_TIMEOUT,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> None:
        self.path = Path(path).expanduser()
        if not self.path.exists():
            if not create:
                raise RecordsError(f"{self.path}: no call records database (no such file)")
            _create_private_file(self.path)
        try:
            self._conn = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise RecordsError(f"{self.path}: cannot open call records: {exc}") from None
        try:
            mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise RecordsError(f"{self.path}: cannot switch to WAL mode (got {mode!r})")
            self._conn.execute("PRAGMA synchronous = FULL")
            self.found_version = migrate(self._conn, migrations)
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise RecordsError(f"{self.path}: not a usable call records database: {exc}") from None
        except BaseException:
            self._conn.close()
            raise

    @property
    def schema_version(self) -> int:
        return _user_version(self._conn)

    def insert(self, records: Sequence[CallRecord]) -> None:
        """Write records in one transaction (a second record for a call id replaces the first)."""
        if not records:
            return
        placeholders = ", ".join("?" for _ in _COLUMNS)
        sql = f"INSERT OR REPLACE INTO calls ({', '.join(_COLUMNS)}) VALUES ({placeholders})"
        rows = [_to_row(r) for r in records]
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            self._conn.executemany(sql, rows)
            self._conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
            raise

    def list(
        self,
        limit: int | None = DEFAULT_LIST_LIMIT,
        since: float | datetime | None = None,
        outcome: str | None = None,
    ) -> builtins.list[CallRecord]:
        """Most recent first (by start time); ``limit=None`` for all."""
        where, params = _filters(since, outcome)
        sql = f"SELECT {', '.join(_COLUMNS)} FROM calls{where} ORDER BY started_at DESC, call_id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(max(0, int(limit)))
        return [_from_row(row) for row in self._conn.execute(sql, params)]

    def get(self, call_id: str) -> CallRecord | None:
        row = self._conn.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM calls WHERE call_id = ?", (call_id,)
        ).fetchone()
        return None if row is None else _from_row(row)

    def find(self, prefix: str, limit: int = 10) -> builtins.list[str]:
        """Call ids starting with ``prefix`` (for ``ivr calls show`` with an abbreviated id)."""
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self._conn.execute(
            "SELECT call_id FROM calls WHERE call_id LIKE ? ESCAPE '\\' ORDER BY started_at DESC LIMIT ?",
            (escaped + "%", limit),
        )
        return [str(r[0]) for r in rows]

    def count(self, since: float | datetime | None = None, outcome: str | None = None) -> int:
        where, params = _filters(since, outcome)
        return int(self._conn.execute(f"SELECT count(*) FROM calls{where}", params).fetchone()[0])

    def iter_records(
        self, since: float | datetime | None = None, outcome: str | None = None, *, chunk: int = 500
    ) -> Iterator[CallRecord]:
        """Oldest first, read in chunks (bounded memory on big databases)."""
        where, params = _filters(since, outcome)
        cursor = self._conn.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM calls{where} ORDER BY started_at, call_id", params
        )
        try:
            while rows := cursor.fetchmany(chunk):
                for row in rows:
                    yield _from_row(row)
        finally:
            cursor.close()

    def export_jsonl(
        self,
        dest: str | Path | IO[str],
        *,
        since: float | datetime | None = None,
        outcome: str | None = None,
    ) -> int:
        """Write every matching record as one JSON object per line, oldest first; return the count.

        A path is written through a temporary file and renamed, so a failed export never leaves half
        a file under the final name.
        """
        if not isinstance(dest, str | Path):
            return self._write_jsonl(dest, since, outcome)
        target = Path(dest).expanduser()
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            with tmp.open("w", encoding="utf-8") as out:
                count = self._write_jsonl(out, since, outcome)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return count

    def _write_jsonl(self, out: IO[str], since: float | datetime | None, outcome: str | None) -> int:
        count = 0
        for record in self.iter_records(since, outcome):
            out.write(record.to_json())
            out.write("\n")
            count += 1
        return count

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._conn.execute("PRAGMA optimize")
        self._conn.close()

    def __enter__(self) -> RecordsDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _create_private_file(path: Path) -> None:
    """Records hold callers' words: create the file (and its directory) readable by the owner only.

    SQLite gives the ``-wal`` and ``-shm`` files the same permissions as the database file.
    """
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise RecordsError(f"{path}: cannot create the call records file: {exc.strerror or exc}") from None
    os.close(fd)


def _filters(since: float | datetime | None, outcome: str | None) -> tuple[str, builtins.list[Any]]:
    clauses: builtins.list[str] = []
    params: builtins.list[Any] = []
    start = _since_epoch(since)
    if start is not None:
        clauses.append("started_at >= ?")
        params.append(float(start))
    if outcome is not None:
        clauses.append("outcome = ?")
        params.append(outcome)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def _to_row(record: CallRecord) -> tuple[Any, ...]:
    data = record.to_dict()
    return tuple(
        json.dumps(data[c], ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        if c in _JSON_COLUMNS
        else data[c]
        for c in _COLUMNS
    )


def _from_row(row: Sequence[Any]) -> CallRecord:
    data = {c: (json.loads(v) if c in _JSON_COLUMNS else v) for c, v in zip(_COLUMNS, row, strict=True)}
    return CallRecord.from_dict(data)


# -- the asyncio store -----------------------------------------------------------------------------


class _Job:
    __slots__ = ("fn", "future", "loop")

    def __init__(
        self,
        fn: Callable[[RecordsDatabase], Any],
        future: asyncio.Future[Any],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.fn = fn
        self.future = future
        self.loop = loop


class _Insert(_Job):
    __slots__ = ("record",)

    def __init__(
        self, record: CallRecord, future: asyncio.Future[Any], loop: asyncio.AbstractEventLoop
    ) -> None:
        super().__init__(_no_op, future, loop)
        self.record = record


def _no_op(db: RecordsDatabase) -> None:
    return None


_STOP = object()


def _resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return  # the awaiting task was cancelled; the work was done (or failed) all the same
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class _Writer(threading.Thread):
    """Owns the writing connection; runs jobs in submission order, batching consecutive inserts."""

    def __init__(self, path: Path, opened: asyncio.Future[None], loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(name="ivr-call-records", daemon=True)
        self.path = path
        self.opened = opened
        self.loop = loop
        self.jobs: queue.SimpleQueue[_Job | object] = queue.SimpleQueue()
        self.failure: BaseException | None = None

    def run(self) -> None:
        db: RecordsDatabase | None = None
        backlog: collections.deque[_Job | object] = collections.deque()
        try:
            try:
                db = RecordsDatabase(self.path, busy_timeout=_WRITER_BUSY_TIMEOUT)
            except BaseException as exc:
                self.failure = exc
                self._signal(self.opened, None, _as_records_error(exc))
                return
            self._signal(self.opened, None, None)
            while True:
                job = backlog.popleft() if backlog else self.jobs.get()
                if job is _STOP:
                    break
                assert isinstance(job, _Job)
                if isinstance(job, _Insert):
                    batch = [job]
                    while len(batch) < _GROUP_COMMIT_MAX:
                        try:
                            nxt = self.jobs.get_nowait()
                        except queue.Empty:
                            break
                        if isinstance(nxt, _Insert):
                            batch.append(nxt)
                        else:
                            backlog.append(nxt)
                            break
                    self._insert(db, batch)
                else:
                    try:
                        result = job.fn(db)
                    except Exception as exc:
                        self._finish(job, None, _as_records_error(exc))
                    else:
                        self._finish(job, result, None)
        except BaseException as exc:  # open failed, or a bug: fail whatever waits, never hang it
            self.failure = exc
            if not isinstance(exc, RecordsError):
                log.exception("call records writer stopped")
            backlog.extend(self._drain())
            for job in backlog:
                if isinstance(job, _Job):
                    self._finish(job, None, _as_records_error(exc))
        finally:
            if db is not None:
                db.close()

    def _drain(self) -> builtins.list[_Job | object]:
        left: builtins.list[_Job | object] = []
        while True:
            try:
                left.append(self.jobs.get_nowait())
            except queue.Empty:
                return left

    def _insert(self, db: RecordsDatabase, batch: builtins.list[_Insert]) -> None:
        try:
            db.insert([job.record for job in batch])
        except Exception as exc:
            if len(batch) == 1:
                log.error("call %s: call record NOT written: %s", batch[0].record.call_id, exc)
                self._finish(batch[0], None, _as_records_error(exc))
                return
            for job in batch:  # isolate the bad record; the others still go in
                self._insert(db, [job])
            return
        for job in batch:
            self._finish(job, job.record, None)

    @staticmethod
    def _finish(job: _Job, result: Any, error: BaseException | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
            job.loop.call_soon_threadsafe(_resolve, job.future, result, error)

    def _signal(self, future: asyncio.Future[None], result: None, error: BaseException | None) -> None:
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(_resolve, future, result, error)


def _as_records_error(exc: BaseException) -> BaseException:
    if isinstance(exc, RecordsError | asyncio.CancelledError):
        return exc
    return RecordsError(f"call records: {type(exc).__name__}: {exc}")


class CallRecordStore:
    """The call records of a running ``ivr``: ``await record(report)`` when each call ends.

    ::

        store = CallRecordStore(settings.records_path)
        await store.open()                      # creates/migrates the file; RecordsError if unusable
        app = AriApp(..., on_report=store.record)
        ...
        await store.close()                     # waits for queued records, then closes

    ``record`` returns once the row is committed (see the module docstring for durability). If the
    task awaiting it is cancelled, the record is still written. Nothing here blocks the event loop.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self._writer: _Writer | None = None
        self._closing = False

    async def open(self) -> None:
        if self._writer is not None:
            raise RecordsError("call records store already opened")
        loop = asyncio.get_running_loop()
        opened: asyncio.Future[None] = loop.create_future()
        self._writer = _Writer(self.path, opened, loop)
        self._writer.start()
        try:
            await opened
        except BaseException:
            self._closing = True
            await asyncio.to_thread(self._writer.join)
            raise

    async def __aenter__(self) -> CallRecordStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def is_open(self) -> bool:
        return self._writer is not None and not self._closing and self._writer.is_alive()

    async def record(
        self,
        report: CallReport,
        *,
        caller: str | None = None,
        linkedid: str | None = None,
        direction: str | None = None,
    ) -> CallRecord:
        """Store one finished call; returns the record as written, once committed."""
        record = CallRecord.from_report(report, caller=caller, linkedid=linkedid, direction=direction)
        writer = self._live_writer()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[CallRecord] = loop.create_future()
        writer.jobs.put(_Insert(record, future, loop))
        return await future

    async def list(
        self,
        limit: int | None = DEFAULT_LIST_LIMIT,
        since: float | datetime | None = None,
        outcome: str | None = None,
    ) -> builtins.list[CallRecord]:
        """Most recent first; see :meth:`RecordsDatabase.list`."""
        return await self._submit(lambda db: db.list(limit, since, outcome))

    async def get(self, call_id: str) -> CallRecord | None:
        return await self._submit(lambda db: db.get(call_id))

    async def export_jsonl(
        self,
        dest: str | Path | IO[str],
        *,
        since: float | datetime | None = None,
        outcome: str | None = None,
    ) -> int:
        """JSONL export on its own read connection and thread: calls keep being recorded meanwhile."""
        self._live_writer()

        def export() -> int:
            with RecordsDatabase(self.path, create=False) as db:
                return db.export_jsonl(dest, since=since, outcome=outcome)

        return await asyncio.to_thread(export)

    async def close(self) -> None:
        """Wait for every record queued so far to be committed, then close the database."""
        writer = self._writer
        if writer is None or self._closing:
            self._closing = True
            return
        self._closing = True
        writer.jobs.put(_STOP)
        await asyncio.to_thread(writer.join)

    def _live_writer(self) -> _Writer:
        writer = self._writer
        if writer is None:
            raise RecordsError("call records store is not open (call open() first)")
        if self._closing:
            raise RecordsError("call records store is closed")
        if not writer.is_alive():
            raise RecordsError(f"call records writer has stopped: {writer.failure!r}")
        return writer

    async def _submit(self, fn: Callable[[RecordsDatabase], T]) -> T:
        writer = self._writer
        if writer is None:
            raise RecordsError("call records store is not open (call open() first)")
        if self._closing or not writer.is_alive():
            self._live_writer()  # raises with the reason
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        writer.jobs.put(_Job(fn, future, loop))
        return await future
