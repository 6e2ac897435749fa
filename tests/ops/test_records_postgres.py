"""PostgreSQL records against a real server: outages (records spooled, replayed exactly once), a killed
process's spool, connection errors without secrets, and a busy database never holding up the loop."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import signal
import sqlite3
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ivr.ops.records import CallRecord, RecordsError
from tests.conftest import PostgresFactory
from tests.ops.conftest import Engine
from tests.ops.helpers import make_report
from tests.ops.test_checkpoints import point
from tests.real_postgres import RealPostgres
from tests.services import free_tcp_port, unavailable

if TYPE_CHECKING:
    from ivr.ops.records.postgres_store import PostgresRecordStore

REPO = Path(__file__).resolve().parents[2]


def pg_store(engine: Engine, instance: str = "a") -> PostgresRecordStore:
    """The engine's store, retrying PostgreSQL every 50-200 ms instead of 0.5-5 s (same mechanism)."""
    from ivr.ops.records.postgres_store import PostgresRecordStore

    store = engine.store(instance)
    assert isinstance(store, PostgresRecordStore)
    store.retry_min = 0.05
    store.retry_max = 0.2
    return store


def up(store: PostgresRecordStore) -> bool:
    """Whether the store has PostgreSQL (a call, so that type narrowing does not stick between awaits)."""
    return store.available


def spooled_on_disk(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT count(*) FROM spool").fetchone()[0])
    finally:
        conn.close()


def call_ids(engine: Engine) -> list[str]:
    return engine.sql("SELECT call_id FROM calls ORDER BY call_id").splitlines()


@pytest.mark.parametrize("how", ["fast", "immediate"])
async def test_postgres_down_calls_go_on_and_every_record_lands_once(
    postgres_factory: PostgresFactory, tmp_path: Path, how: str
) -> None:
    """ "PostgreSQL down for 10 s: calls go on, records are kept locally and written when it returns",
    with the outage shortened to the time the test takes (the mechanism does not depend on it)."""
    server = postgres_factory()  # its own server: this test stops it
    engine = Engine("postgres", tmp_path, url=server.create_database(), server=server)
    store = pg_store(engine)
    spool = tmp_path / "spool-a.sqlite3"
    async with store:
        for i in range(10):
            await store.record(make_report(f"before-{i:02d}"))
        store.save_checkpoint(point("live", "menu"))
        await store.flush_checkpoints()
        assert up(store)

        await asyncio.to_thread(server.stop, how)
        during = await asyncio.gather(*(store.record(make_report(f"during-{i:02d}")) for i in range(20)))
        assert [r.call_id for r in during] == [f"during-{i:02d}" for i in range(20)]  # calls went on
        assert not up(store)
        await store.record(make_report("twice", outcome="error"))  # one call recorded twice during
        await store.record(make_report("twice", outcome="completed"))  # the outage: the later wins
        store.save_checkpoint(point("live", "pin"))  # kept in memory until PostgreSQL returns
        for i in range(10):  # the outage goes on while calls end
            await store.record(make_report(f"late-{i:02d}"))
            await asyncio.sleep(0.05)
        assert store.spooled == 32
        assert spooled_on_disk(spool) == 32  # committed to the local file, not only in memory
        with pytest.raises(RecordsError, match="unreachable"):
            await store.load_checkpoint("live")  # lookups fail fast while it is down

        await asyncio.to_thread(server.start)
        for i in range(5):  # queued behind the spool, so order is kept
            await store.record(make_report(f"after-{i:02d}"))
        await store.wait_idle()
        assert up(store)
        assert store.spooled == 0
        live = await store.load_checkpoint("live")
        assert live is not None
        assert live.step == "pin"
    expected = sorted(
        [f"before-{i:02d}" for i in range(10)]
        + [f"during-{i:02d}" for i in range(20)]
        + [f"late-{i:02d}" for i in range(10)]
        + [f"after-{i:02d}" for i in range(5)]
        + ["twice"]
    )
    assert call_ids(engine) == expected  # every record, each exactly once
    assert engine.sql("SELECT outcome FROM calls WHERE call_id = 'twice'") == "completed"  # in order
    assert engine.sql("SELECT count(DISTINCT instance) || ':' || min(instance) FROM calls") == "1:a"
    assert spooled_on_disk(spool) == 0


_KILLED_WHILE_DOWN = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from ivr.call.report import CallReport
    from ivr.ops.records import create_store

    async def main(url, spool, n):
        store = create_store(path=spool + ".unused", url=url, spool=spool, instance="killed")
        await store.open()
        print("open", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # PostgreSQL stopped
        await asyncio.gather(*(
            store.record(CallReport(call_id=f"k{i}", flow="f", outcome="completed", ended_at=1.0))
            for i in range(n)
        ))
        print("recorded", n, store.spooled, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
    """
)


async def test_records_spooled_by_a_killed_process_are_written_by_the_next(
    postgres_factory: PostgresFactory, tmp_path: Path
) -> None:
    server = postgres_factory()
    engine = Engine("postgres", tmp_path, url=server.create_database(), server=server)
    spool = tmp_path / "spool-a.sqlite3"  # the spool the next instance (engine.store("a")) opens
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _KILLED_WHILE_DOWN,
        engine.pg_url,
        str(spool),
        "25",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    try:
        assert (await asyncio.wait_for(proc.stdout.readline(), 60)).strip() == b"open"
        await asyncio.to_thread(server.stop, "fast")
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, err.decode()
    assert out.decode().split() == ["recorded", "25", "25"]
    assert spooled_on_disk(spool) == 25

    await asyncio.to_thread(server.start)
    async with pg_store(engine) as store:
        await store.wait_idle()
    assert call_ids(engine) == sorted(f"k{i}" for i in range(25))
    assert engine.sql("SELECT DISTINCT instance FROM calls") == "killed"
    assert spooled_on_disk(spool) == 0


async def test_a_replay_cut_short_writes_each_record_once(pg_engine: Engine) -> None:
    """PostgreSQL committed a chunk but the process died before emptying the spool: replaying it again
    changes nothing (records are upserts by call id, instance lists are unions)."""
    from ivr.ops.records.spool import SpoolDatabase

    async with pg_store(pg_engine) as store:
        written = [await store.record(make_report(f"r{i}")) for i in range(5)]
    spool = SpoolDatabase(pg_engine.directory / "spool-a.sqlite3")
    spool.append(written)  # the same records, still spooled
    spool.close()
    async with pg_store(pg_engine) as store:
        await store.wait_idle()
        again = [await store.get(f"r{i}") for i in range(5)]
    assert again == written
    assert pg_engine.sql("SELECT count(*) FROM calls") == "5"


@contextlib.contextmanager
def write_lock(engine: Engine) -> Iterator[None]:
    """Another client holds the calls table's write lock: the next record must wait for the database."""
    if engine.server is not None:
        import psycopg

        with psycopg.connect(engine.pg_url) as pg_conn:
            pg_conn.execute("LOCK TABLE calls IN EXCLUSIVE MODE")
            yield
            pg_conn.rollback()
        return
    conn = sqlite3.connect(engine.path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


async def test_a_stuck_database_never_blocks_the_event_loop(engine: Engine) -> None:
    async with engine.store() as store:
        await store.record(make_report("warm"))
        with write_lock(engine):
            stuck = asyncio.create_task(store.record(make_report("stuck")))
            for _ in range(20):  # the loop keeps running other work while the write waits
                await asyncio.sleep(0.005)
            store.save_checkpoint(point("busy"))  # and saving a checkpoint returns at once
            assert not stuck.done()
        written = await asyncio.wait_for(stuck, 30)
    assert written.call_id == "stuck"


async def test_unreachable_or_refused_postgres_fails_open_with_one_line_and_no_password(
    real_postgres: RealPostgres, tmp_path: Path
) -> None:
    nobody = f"postgresql://ivr:S3CRETPW@127.0.0.1:{free_tcp_port()}/x?connect_timeout=3"
    wrong = real_postgres.url().replace(real_postgres.password, "WRONGPW99")
    for url, why in ((nobody, "cannot connect"), (wrong, "password authentication failed")):
        store = Engine("postgres", tmp_path, url=url).store()
        with pytest.raises(RecordsError, match=why) as failed:
            await store.open()
        message = str(failed.value)
        assert "\n" not in message
        assert "S3CRETPW" not in message
        assert "WRONGPW99" not in message
        assert "[redacted]" in store.where
        with pytest.raises(RecordsError, match="closed"):
            await store.record(make_report("x"))


async def test_text_postgres_cannot_hold_is_stored_readably(pg_engine: Engine) -> None:
    async with pg_engine.store() as store:
        written = await store.record(
            make_report(
                "nul", reason="bad\x00byte", transcript=[("caller", "a\x00b")], variables={"v": "x\x00y"}
            )
        )
        stored = await store.get("nul")
    assert stored is not None
    assert written.transcript == [("caller", "a\x00b")]
    assert stored.transcript == [("caller", "a\ufffdb")]
    assert stored.reason == "bad\ufffdbyte"
    assert stored.variables == {"v": "x\ufffdy"}


def test_records_written_synchronously_match_the_async_store(pg_engine: Engine) -> None:
    from ivr.ops.records.postgres_db import PostgresDatabase

    record = CallRecord.from_report(make_report("sync"), instance="cli")
    with PostgresDatabase(pg_engine.pg_url) as db:
        [stored] = db.write_records([record])
        assert db.get("sync") == stored == record
        assert db.count() == 1


async def test_ivr_run_records_calls_in_postgres_labelled_by_instance(pg_engine: Engine) -> None:
    from ivr.sim.ari_server import SimAsterisk
    from ivr.sim.caller_leg import CallerLegs
    from ivr.workers.process import serve
    from tests.call.test_ivr_run import settings_for

    legs = CallerLegs()
    async with SimAsterisk(username="ivr", password="pw", media_connector=legs.connect) as sim:
        settings = settings_for(
            sim,
            IVR_RECORDS_URL=pg_engine.pg_url,
            IVR_RECORDS_SPOOL=pg_engine.directory / "spool.sqlite3",
            IVR_INSTANCE_ID="ivr-east-1",
        )
        stop = asyncio.Event()
        ready = asyncio.Event()
        task = asyncio.create_task(serve(settings, stop=stop, ready=lambda info: ready.set()))
        await asyncio.wait_for(ready.wait(), 10)
        caller = await sim.place_call()
        await sim.wait_for(lambda: bool(legs.legs), 5)
        [leg] = legs.legs.values()
        await leg.wait_heard("Say sales")
        await sim.press_dtmf(caller.id, "2")
        await sim.wait_for(lambda: caller.id in sim.destroyed, 10)
        stop.set()
        assert await asyncio.wait_for(task, 15) == 0
    assert pg_engine.sql("SELECT call_id, instance, instances::text FROM calls") == (
        f'{caller.id}|ivr-east-1|["ivr-east-1"]'
    )


async def test_ivr_run_refuses_to_start_on_unreachable_postgres(tmp_path: Path) -> None:
    from ivr.sim.ari_server import SimAsterisk
    from ivr.workers.process import StartupError, serve
    from tests.call.test_ivr_run import settings_for

    if importlib.util.find_spec("psycopg") is None:
        unavailable("PostgreSQL", "pip install -e '.[postgres]' (the psycopg driver)")
    async with SimAsterisk(username="ivr", password="pw") as sim:
        url = f"postgresql://ivr:PW-NOT-SHOWN@127.0.0.1:{free_tcp_port()}/ivr?connect_timeout=3"
        with pytest.raises(StartupError) as failed:
            await serve(settings_for(sim, IVR_RECORDS_URL=url, IVR_RECORDS_SPOOL=tmp_path / "s.sqlite3"))
    message = str(failed.value)
    assert message.startswith("call records at postgresql://ivr:[redacted]@127.0.0.1:")
    assert "cannot connect" in message
    assert "PW-NOT-SHOWN" not in message
    assert "\n" not in message
