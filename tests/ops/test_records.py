"""Call records: round trip, masking, durability across a killed process, concurrency, schema."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import sqlite3
import stat
import sys
import textwrap
from pathlib import Path

import pytest
from pydantic import SecretStr

from ivr.call.report import MASKED_DIGIT, CallReport
from ivr.flow.builtins import MASK
from ivr.ops.records import (
    MIGRATIONS,
    SCHEMA_VERSION,
    CallRecord,
    CallRecordStore,
    Migration,
    RecordsDatabase,
    RecordsError,
    redact_text,
)
from tests.ops.conftest import Engine
from tests.ops.helpers import make_report

REPO = Path(__file__).resolve().parents[2]


def leftovers(directory: Path, prefix: str) -> list[Path]:
    return [p for p in directory.iterdir() if p.name.startswith(prefix)]


def database_bytes(directory: Path) -> bytes:
    """The database and its WAL/SHM files, as on disk."""
    return b"".join(p.read_bytes() for p in leftovers(directory, "calls.sqlite3"))


async def test_round_trip_record_list_get_export(engine: Engine, tmp_path: Path) -> None:
    async with engine.store("host-1") as store:
        written = await store.record(
            make_report("c1", started_at=1000.0), caller="+15551234", linkedid="1700.1", direction="inbound"
        )
        await store.record(make_report("c2", started_at=2000.0, outcome="error", errors=["stt failed"]))
        await store.record(make_report("c3", started_at=3000.0, outcome="transferred"))

        assert written.call_id == "c1"
        assert written.caller == "+15551234"
        assert (written.instance, written.instances, written.resumed) == ("host-1", ["host-1"], False)
        got = await store.get("c1")
        assert got == written
        assert got is not None
        assert got.linkedid == "1700.1"
        assert got.direction == "inbound"
        assert got.path == ["welcome", "menu", "pin", "balance", "goodbye"]
        assert got.transcript[1] == ("caller", "balance please")
        assert got.variables == {"intent": "balance", "pin": MASK, "attempts": 1, "amount": 12.5}
        assert got.response_latency_ms == [412.0, 380.5]
        assert got.greeting_latency_ms == 231.25
        assert got.duration_s == pytest.approx(42.5)
        assert await store.get("nope") is None

        assert [r.call_id for r in await store.list()] == ["c3", "c2", "c1"]  # most recent first
        assert [r.call_id for r in await store.list(limit=2)] == ["c3", "c2"]
        assert [r.call_id for r in await store.list(outcome="error")] == ["c2"]
        assert [r.call_id for r in await store.list(since=1500.0)] == ["c3", "c2"]
        errored = await store.get("c2")
        assert errored is not None
        assert errored.errors == ["stt failed"]
        assert errored.caller is None

        out = tmp_path / "export.jsonl"
        assert await store.export_jsonl(out) == 3
        stream = io.StringIO()
        assert await store.export_jsonl(stream, outcome="transferred") == 1

    lines = out.read_text(encoding="utf-8").splitlines()
    parsed = [json.loads(line) for line in lines]
    assert [p["call_id"] for p in parsed] == ["c1", "c2", "c3"]  # oldest first
    assert parsed[0]["linkedid"] == "1700.1"
    assert parsed[0]["duration_s"] == 42.5
    assert CallRecord.from_dict(parsed[0]) == written
    assert json.loads(stream.getvalue())["call_id"] == "c3"
    assert not leftovers(tmp_path, ".export.jsonl.")  # the temporary file was renamed away


async def test_masked_values_stay_masked_and_secrets_never_reach_the_database(
    engine: Engine, tmp_path: Path
) -> None:
    report = make_report(
        "secret-call",
        errors=["POST https://bob:hunter2pw@hooks.example/x?api_key=K3YVALUE&page=2 failed"],
        reason="webhook said Authorization: Bearer SEKRETTOKEN123",
        variables={
            "account": MASK,
            "api_token": "tok-PLAINTOKEN",
            "db_password": SecretStr("PLAINPASSWORD"),
            "callback": "https://alice:ALICEPW@example.com/cb?token=QUERYTOKEN",
            "profile": {"name": "Ann", "client_secret": "NESTEDSECRET"},
            "digits": [1, 2, float("nan")],
        },
    )
    async with engine.store() as store:
        record = await store.record(report)
        stored = await store.get("secret-call")
    assert stored == record
    assert stored.dtmf == ["1", *[MASKED_DIGIT] * 4]  # sensitive keys as the runtime masked them
    assert ("caller", MASK) in stored.transcript
    assert stored.variables["account"] == MASK
    assert stored.variables["api_token"] == MASK
    assert stored.variables["db_password"] == MASK
    assert stored.variables["profile"] == {"name": "Ann", "client_secret": MASK}
    assert stored.variables["digits"] == [1, 2, None]
    assert stored.variables["callback"] == f"https://{MASK}@example.com/cb?token={MASK}"
    assert stored.errors == [f"POST https://{MASK}@hooks.example/x?api_key={MASK}&page=2 failed"]
    assert "SEKRETTOKEN123" not in stored.reason

    if engine.server is not None:
        raw = engine.sql("SELECT row_to_json(c)::text FROM calls c").encode()
    else:
        raw = database_bytes(tmp_path)
    for secret in (
        b"hunter2pw",
        b"K3YVALUE",
        b"SEKRETTOKEN123",
        b"PLAINTOKEN",
        b"PLAINPASSWORD",
        b"ALICEPW",
        b"QUERYTOKEN",
        b"NESTEDSECRET",
    ):
        assert secret not in raw, secret
    assert b"Ann" in raw  # ordinary values are stored


def test_redact_text_leaves_ordinary_text_alone() -> None:
    text = "monkey=3 sip:alice@example.com keyboard https://example.com/a?b=1"
    assert redact_text(text) == text


_KILL_SCRIPT = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from ivr.call.report import CallReport
    from ivr.ops.records import CallRecordStore

    async def main(path, n, how):
        store = CallRecordStore(path)
        await store.open()
        await asyncio.gather(*(
            store.record(CallReport(call_id=f"k{i}", flow="f", outcome="completed", ended_at=1.0))
            for i in range(n)
        ))
        print("recorded", n, flush=True)
        if how == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif how == "sigterm":
            os.kill(os.getpid(), signal.SIGTERM)
        os._exit(0)  # no close(), no interpreter shutdown

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
    """
)


@pytest.mark.parametrize(
    ("how", "code"), [("sigkill", -signal.SIGKILL), ("sigterm", -signal.SIGTERM), ("exit", 0)]
)
async def test_records_survive_the_process_being_killed(tmp_path: Path, how: str, code: int) -> None:
    db = tmp_path / "calls.sqlite3"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _KILL_SCRIPT,
        str(db),
        "40",
        how,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == code, err.decode()
    assert out.decode().strip() == "recorded 40"
    with RecordsDatabase(db, create=False) as reopened:
        assert reopened.count() == 40
        assert {r.call_id for r in reopened.list(limit=None)} == {f"k{i}" for i in range(40)}


async def test_concurrent_writes_from_many_tasks(engine: Engine) -> None:
    async with engine.store() as store:

        async def one(i: int) -> CallRecord:
            await asyncio.sleep(0.001 * (i % 7))
            return await store.record(make_report(f"call-{i:04d}", started_at=1000.0 + i), linkedid=str(i))

        written = await asyncio.gather(*(one(i) for i in range(400)))
        assert len({r.call_id for r in written}) == 400
        listed = await store.list(limit=None)
    assert len(listed) == 400
    assert listed[0].call_id == "call-0399"
    assert listed[-1].call_id == "call-0000"
    assert all(r.linkedid == str(int(r.call_id.removeprefix("call-"))) for r in listed)


async def test_close_waits_for_queued_records_and_cancelled_awaits_still_write(engine: Engine) -> None:
    store = engine.store()
    await store.open()
    tasks = [asyncio.create_task(store.record(make_report(f"q{i}"))) for i in range(30)]
    await asyncio.sleep(0)  # every task has queued its record
    tasks[0].cancel()
    await store.close()
    await asyncio.gather(*tasks, return_exceptions=True)
    with engine.database() as reopened:
        assert reopened.count() == 30
    with pytest.raises(RecordsError, match="closed"):
        await store.record(make_report("late"))


async def test_store_must_be_open(tmp_path: Path) -> None:
    store = CallRecordStore(tmp_path / "calls.sqlite3")
    with pytest.raises(RecordsError, match="not open"):
        await store.record(make_report("x"))
    assert not store.is_open


async def test_open_fails_cleanly_on_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    junk = tmp_path / "calls.sqlite3"
    junk.write_bytes(b"this is not sqlite at all" * 100)
    store = CallRecordStore(junk)
    with pytest.raises(RecordsError, match="not a usable call records database"):
        await asyncio.wait_for(store.open(), 10)
    with pytest.raises(RecordsError):
        await store.record(make_report("x"))


async def test_a_record_for_the_same_call_replaces_the_first(engine: Engine) -> None:
    async with engine.store() as store:
        await store.record(make_report("dup", outcome="error"))
        await store.record(make_report("dup", outcome="completed"))
        assert [r.outcome for r in await store.list()] == ["completed"]


def test_report_without_end_time_gets_the_recording_time() -> None:
    report = CallReport(call_id="o1", flow="", outcome="busy", started_at=100.0)
    report.response_latency_ms = [float("inf"), 12.0]
    record = CallRecord.from_report(report, direction="outbound", now=105.0)
    assert record.ended_at == 105.0
    assert record.duration_s == 5.0
    assert record.recorded_at == 105.0
    assert record.response_latency_ms == [12.0]
    assert record.greeting_latency_ms is None
    assert json.loads(record.to_json())["direction"] == "outbound"


def test_new_database_is_wal_versioned_and_private(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "calls.sqlite3"
    with RecordsDatabase(path) as db:
        assert db.schema_version == SCHEMA_VERSION == len(MIGRATIONS)
        assert db.found_version == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        conn.close()
    with RecordsDatabase(path) as again:
        assert again.found_version == SCHEMA_VERSION


def test_missing_database_is_not_created_when_reading(tmp_path: Path) -> None:
    path = tmp_path / "absent.sqlite3"
    with pytest.raises(RecordsError, match="no such file"):
        RecordsDatabase(path, create=False)
    assert not path.exists()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "calls.sqlite3"
    RecordsDatabase(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(RecordsError, match="newer than this ivr"):
        RecordsDatabase(path)


def test_unversioned_calls_table_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE calls (x)")
    conn.commit()
    conn.close()
    with pytest.raises(RecordsError, match="not an ivr records database"):
        RecordsDatabase(path)


def test_migration_path_upgrades_an_old_database_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "calls.sqlite3"
    with RecordsDatabase(path) as db:
        db.insert([CallRecord.from_report(make_report("old"), now=1.0)])

    add_queue = Migration(
        "queue column",
        sqlite=("ALTER TABLE calls ADD COLUMN queue TEXT",),
        postgres=("ALTER TABLE calls ADD COLUMN queue TEXT",),
    )
    newer = (*MIGRATIONS, add_queue)
    with RecordsDatabase(path, migrations=newer) as db:
        assert db.found_version == SCHEMA_VERSION
        assert db.schema_version == SCHEMA_VERSION + 1
        assert db.get("old") is not None
    with RecordsDatabase(path, migrations=newer) as db:
        assert db.found_version == SCHEMA_VERSION + 1  # applied once
    conn = sqlite3.connect(path)
    try:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(calls)")]
        versions = conn.execute("SELECT version, name FROM schema_version ORDER BY version").fetchall()
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
    finally:
        conn.close()
    assert "queue" in columns
    assert versions[-1] == (SCHEMA_VERSION + 1, "queue column")
    assert [v for v, _ in versions] == list(range(1, SCHEMA_VERSION + 2))


def test_failed_migration_rolls_back_entirely(tmp_path: Path) -> None:
    path = tmp_path / "calls.sqlite3"
    RecordsDatabase(path).close()
    broken = Migration(
        "broken",
        sqlite=("ALTER TABLE calls ADD COLUMN half TEXT", "SELECT * FROM no_such_table"),
        postgres=(),
    )
    with pytest.raises(RecordsError, match="no such table"):
        RecordsDatabase(path, migrations=(*MIGRATIONS, broken))
    with RecordsDatabase(path) as db:
        assert db.schema_version == SCHEMA_VERSION
    conn = sqlite3.connect(path)
    try:
        assert "half" not in [row[1] for row in conn.execute("PRAGMA table_info(calls)")]
    finally:
        conn.close()


async def test_export_while_recording_uses_its_own_connection(engine: Engine) -> None:
    async with engine.store() as store:
        for i in range(5):
            await store.record(make_report(f"e{i}", started_at=float(i)))
        out = io.StringIO()
        export, more = await asyncio.gather(
            store.export_jsonl(out), asyncio.gather(*(store.record(make_report(f"m{i}")) for i in range(20)))
        )
        assert export >= 5
        assert len(more) == 20
        assert len(out.getvalue().splitlines()) == export
