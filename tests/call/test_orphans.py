"""Calls of a dead instance whose caller left before anyone took them over still get their one record
(ivr.call.orphans), on a real records store (SQLite; two "instances" sharing the file)."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ivr.call.orphans import OrphanSweeper
from ivr.ops.records import RecordsError, RecordStore, create_store
from tests.call.test_resume import a_call_at_its_second_question


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def age(path: Path, seconds: float) -> None:
    """Make every checkpoint look ``seconds`` older (as if written that long ago)."""
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE checkpoints SET updated_at = updated_at - ?", (seconds,))


def sweeper_of(store: RecordStore, serving: list[str] | None = None) -> OrphanSweeper:
    """A sweeper whose database has answered for long enough (the wait itself is tested below)."""
    sweeper = OrphanSweeper(store, lambda: list(serving or []), orphan_after=60)
    sweeper._reachable_since = time.time() - 61
    return sweeper


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[tuple[RecordStore, RecordStore, Path]]:
    path = tmp_path / "calls.sqlite3"
    dead = create_store(path=path, instance="dead")
    live = create_store(path=path, instance="live")
    await dead.open()
    await live.open()
    yield dead, live, path
    await live.close()
    await dead.close()


async def test_a_checkpoint_nobody_touches_becomes_one_error_record(
    stores: tuple[RecordStore, RecordStore, Path],
) -> None:
    dead, live, path = stores
    await a_call_at_its_second_question(dead)  # then "dead" dies: nobody touches call c1
    sweeper = sweeper_of(live)
    assert await sweeper.once() == 0, "c1 was written moments ago"
    age(path, 120)
    assert await sweeper.once() == 1
    record = await live.get("c1")
    assert record is not None
    assert record.outcome == "error"
    assert "its instance dead stopped" in record.reason
    assert record.path == ["hello", "first", "second"]
    assert record.dtmf == ["4"]
    assert record.variables.get("first") == "4"
    assert record.instances == ["live"]
    assert record.resumed is False, "closed, not resumed"
    assert await live.load_checkpoint("c1") is None
    assert await sweeper.once() == 0, "recorded once"


async def test_the_calls_a_live_process_serves_are_not_orphans(
    stores: tuple[RecordStore, RecordStore, Path],
) -> None:
    owner, other, path = stores
    await a_call_at_its_second_question(owner)
    age(path, 120)
    await sweeper_of(owner, serving=["c1"]).once()  # the owner still serves c1: it touches it
    assert await sweeper_of(other).once() == 0
    assert await other.load_checkpoint("c1") is not None


class Unreachable:
    """A store whose database does not answer (an outage), then does."""

    def __init__(self, store: RecordStore) -> None:
        self.store = store
        self.down = True

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)

    async def touch_checkpoints(self, call_ids: list[str]) -> None:
        if self.down:
            raise RecordsError("PostgreSQL unreachable")
        await self.store.touch_checkpoints(call_ids)


async def test_after_an_outage_nothing_is_swept_until_owners_had_time_to_touch(
    stores: tuple[RecordStore, RecordStore, Path],
) -> None:
    dead, live, path = stores
    await a_call_at_its_second_question(dead)
    age(path, 3600)  # every checkpoint looks an hour old
    clock = Clock()
    flaky = Unreachable(live)
    sweeper = OrphanSweeper(flaky, lambda: [], orphan_after=60, clock=clock)  # type: ignore[arg-type]
    assert await sweeper.once() == 0
    flaky.down = False
    assert await sweeper.once() == 0, "the database is back, but the owners have not touched theirs yet"
    clock.now += 61
    assert await sweeper.once() == 1
