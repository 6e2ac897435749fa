"""Schema versions and migrations on both engines: today's files migrate without losing a record,
concurrent starts migrate once, a newer database is refused with one line."""

from __future__ import annotations

import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ivr.ops.records import (
    MIGRATIONS,
    SCHEMA_VERSION,
    CallRecord,
    CallRecordStore,
    Migration,
    RecordsDatabase,
    RecordsError,
)
from ivr.ops.records.sqlite_db import open_sqlite
from tests.ops.conftest import Engine
from tests.ops.helpers import make_report

V1_DUMP = Path(__file__).parent / "fixtures" / "records_v1.sql"
V1_IDS = ["1732000001.11", "1732000002.22", "1732000003.33"]


def v1_file(path: Path) -> Path:
    """A records file exactly as the code before schema v2 wrote it (DDL and rows dumped from it)."""
    conn = sqlite3.connect(path)
    conn.executescript(V1_DUMP.read_text(encoding="utf-8"))
    conn.close()
    return path


def sqlite_versions(path: Path) -> tuple[int, list[tuple[int, str]]]:
    conn = sqlite3.connect(path)
    try:
        user_version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        rows = conn.execute("SELECT version, name FROM schema_version ORDER BY version").fetchall()
    finally:
        conn.close()
    return user_version, [(int(v), str(n)) for v, n in rows]


def assert_v1_records_intact(records: list[CallRecord]) -> None:
    by_id = {r.call_id: r for r in records}
    assert sorted(by_id) == V1_IDS
    first = by_id["1732000001.11"]
    assert first.caller == "+15550001"
    assert first.linkedid == "1732000001.11"
    assert first.path == ["welcome", "menu", "pin", "balance", "goodbye"]
    assert first.transcript[3] == ("caller", "[redacted]")
    assert first.variables == {"intent": "balance", "pin": "[redacted]", "attempts": 1, "amount": 12.5}
    assert first.response_latency_ms == [412.0, 380.5]
    assert first.duration_s == pytest.approx(42.5)
    assert by_id["1732000002.22"].errors == ["speech-to-text failed: timeout"]
    assert by_id["1732000003.33"].direction == "outbound"
    assert by_id["1732000003.33"].greeting_latency_ms is None
    for record in records:  # columns added by v2 read as "unknown instance, not resumed"
        assert (record.instance, record.instances, record.resumed) == (None, [], False)
        assert (record.flow_version, record.recordings) == (None, [])  # v3: no version, no messages


def test_a_file_written_by_todays_schema_migrates_without_losing_records(tmp_path: Path) -> None:
    path = v1_file(tmp_path / "calls.sqlite3")
    with RecordsDatabase(path) as db:
        assert db.found_version == 1
        assert db.schema_version == SCHEMA_VERSION == 3
        assert_v1_records_intact(db.list(limit=None))
        assert db.count() == 3
        db.insert([CallRecord.from_report(make_report("after"), instance="host-1")])
        assert db.get("after") is not None
        assert db.get("after").instances == ["host-1"]  # type: ignore[union-attr]
    user_version, rows = sqlite_versions(path)
    assert user_version == SCHEMA_VERSION  # the first ivr reads this one and refuses the newer file
    assert rows == [
        (1, "calls table"),
        (2, "instances and checkpoints"),
        (3, "flow versions and recordings"),
    ]
    with RecordsDatabase(path) as again:
        assert again.found_version == SCHEMA_VERSION


async def test_ivr_run_migrates_todays_file_on_open(tmp_path: Path) -> None:
    path = v1_file(tmp_path / "calls.sqlite3")
    async with CallRecordStore(path, instance="i1") as store:
        assert_v1_records_intact(await store.list(limit=None))
        await store.record(make_report("new"))
        assert len(await store.list(limit=None)) == 4


def test_processes_opening_an_old_file_at_once_migrate_it_once(tmp_path: Path) -> None:
    path = v1_file(tmp_path / "calls.sqlite3")
    start = threading.Barrier(4)

    def open_it(_: int) -> int:
        start.wait()
        with RecordsDatabase(path, busy_timeout=30) as db:
            return db.found_version

    with ThreadPoolExecutor(4) as pool:
        found = list(pool.map(open_it, range(4)))
    assert sorted(found) == [1, 3, 3, 3]  # one migrated from v1; the others waited and found v3
    assert sqlite_versions(path)[1] == [
        (1, "calls table"),
        (2, "instances and checkpoints"),
        (3, "flow versions and recordings"),
    ]


async def test_a_newer_database_is_refused_with_one_line(engine: Engine) -> None:
    engine.database().close()
    engine.sql(f"INSERT INTO schema_version VALUES ({SCHEMA_VERSION + 1}, 'from the future', 0)")
    with pytest.raises(RecordsError) as refused:
        engine.database()
    message = str(refused.value)
    assert message == (
        f"call records schema v{SCHEMA_VERSION + 1} is newer than this ivr understands "
        f"(v{SCHEMA_VERSION}): upgrade ivr"
    )
    with pytest.raises(RecordsError, match="newer than this ivr"):
        await engine.store("a").open()


def test_postgres_v1_database_migrates_and_keeps_its_rows(pg_engine: Engine) -> None:
    from ivr.ops.records.postgres_db import PostgresDatabase

    with PostgresDatabase(pg_engine.pg_url, migrations=MIGRATIONS[:1]) as v1:
        assert v1.schema_version == 1
    pg_engine.sql(  # a row as the v1 schema holds it
        "INSERT INTO calls VALUES ('old-1', 'bank', 'completed', 'flow ended', 1000, 1042.5, '+1555', 'l1',"
        " 'inbound', '[\"welcome\"]', '[[\"ivr\", \"Hi\"]]', '[\"1\"]', '{\"intent\": \"x\"}', '[]', 12.5,"
        " '[400.0]', 1050)"
    )
    with PostgresDatabase(pg_engine.pg_url) as db:
        assert db.found_version == 1
        assert db.schema_version == SCHEMA_VERSION
        [old] = db.list(limit=None)
    assert (old.call_id, old.caller, old.transcript, old.variables) == (
        "old-1",
        "+1555",
        [("ivr", "Hi")],
        {"intent": "x"},
    )
    assert (old.instance, old.instances, old.resumed) == (None, [], False)
    versions = pg_engine.sql("SELECT version, name FROM schema_version ORDER BY 1")
    assert versions.splitlines() == [
        "1|calls table",
        "2|instances and checkpoints",
        "3|flow versions and recordings",
    ]


def test_postgres_instances_starting_at_once_migrate_once(pg_engine: Engine) -> None:
    """The advisory lock: without it the slow step below would run in several instances at once."""
    from ivr.ops.records.postgres_db import PostgresDatabase

    pg_engine.sql("CREATE TABLE migration_runs (at DOUBLE PRECISION)")
    slow = Migration(
        "slow step",
        sqlite=(),
        postgres=(
            "INSERT INTO migration_runs SELECT extract(epoch FROM clock_timestamp())",
            "SELECT pg_sleep(0.3)",
        ),
    )
    migrations = (*MIGRATIONS, slow)
    start = threading.Barrier(4)

    def start_instance(_: int) -> int:
        start.wait()
        with PostgresDatabase(pg_engine.pg_url, migrations=migrations) as db:
            return db.found_version

    with ThreadPoolExecutor(4) as pool:
        found = list(pool.map(start_instance, range(4)))
    assert found.count(0) == 1  # one instance migrated from an empty database
    assert sorted(found)[1:] == [len(migrations)] * 3  # the others waited, then found it current
    assert pg_engine.sql("SELECT count(*) FROM migration_runs") == "1"
    assert pg_engine.sql("SELECT max(version) FROM schema_version") == str(len(migrations))


def test_postgres_failed_migration_rolls_back_entirely(pg_engine: Engine) -> None:
    from ivr.ops.records.postgres_db import PostgresDatabase

    broken = Migration(
        "broken", sqlite=(), postgres=("ALTER TABLE calls ADD COLUMN half TEXT", "SELECT * FROM nope")
    )
    with pytest.raises(RecordsError, match="nope"):
        PostgresDatabase(pg_engine.pg_url, migrations=(*MIGRATIONS, broken))
    assert pg_engine.sql("SELECT to_regclass('calls') IS NULL") == "t"
    with PostgresDatabase(pg_engine.pg_url) as db:
        assert db.schema_version == SCHEMA_VERSION


def test_postgres_refuses_a_calls_table_that_is_not_ours(pg_engine: Engine) -> None:
    from ivr.ops.records.postgres_db import PostgresDatabase

    pg_engine.sql("CREATE TABLE calls (x int)")
    with pytest.raises(RecordsError, match="not an ivr records database"):
        PostgresDatabase(pg_engine.pg_url)


def test_migration_steps_exist_for_both_engines() -> None:
    for migration in MIGRATIONS:
        assert migration.sqlite
        assert migration.postgres


def test_opening_waits_for_a_lock_held_while_it_leaves_the_rollback_journal(tmp_path: Path) -> None:
    """Another process holds the write lock of an old (rollback-journal) file just as this one opens it:
    SQLite refuses the switch to WAL at once ("database is locked": waiting could deadlock, so its busy
    handler is not called), so the open retries until the lock is gone (within the busy timeout) instead
    of failing the process's start (seen in CI: several workers opening the file together)."""
    path = v1_file(tmp_path / "calls.sqlite3")
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")  # the write lock, as a process migrating the file holds it
    release = threading.Timer(0.3, lambda: holder.execute("COMMIT"))
    release.start()
    try:
        conn = open_sqlite(path, create=False, busy_timeout=5, what="call records")
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.close()
    finally:
        release.join()
        holder.close()
