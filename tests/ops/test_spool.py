"""The local spool on its own: order, bound, rejected records, private file."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from ivr.ops.records import CallRecord, RecordsError
from ivr.ops.records.spool import SpoolDatabase
from tests.ops.helpers import make_report


def records(*ids: str) -> list[CallRecord]:
    return [CallRecord.from_report(make_report(i), instance="a") for i in ids]


def test_spooled_records_come_back_in_order_after_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "spool" / "records-spool.sqlite3"
    written = records("r1", "r2", "r3", "r4", "r5")
    spool = SpoolDatabase(path)
    spool.append(written[:2])
    spool.append(written[2:])
    spool.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    again = SpoolDatabase(path)
    first = again.peek(3)
    assert [e.call_id for e in first] == ["r1", "r2", "r3"]
    assert [e.record for e in first] == written[:3]  # every field comes back
    again.remove([e.seq for e in first])
    assert [e.call_id for e in again.peek(10)] == ["r4", "r5"]
    again.append(records("r6"))
    assert [e.call_id for e in again.peek(10)] == ["r4", "r5", "r6"]
    assert again.count() == 3
    again.close()


def test_the_spool_is_bounded(tmp_path: Path) -> None:
    spool = SpoolDatabase(tmp_path / "s.sqlite3", max_records=3)
    spool.append(records("a", "b"))
    with pytest.raises(RecordsError, match=r"spool .* is full"):
        spool.append(records("c", "d"))
    assert spool.count() == 2  # the refused batch left nothing behind
    spool.append(records("c"))
    assert spool.count() == 3
    spool.close()


def test_rejected_records_are_kept_aside(tmp_path: Path) -> None:
    spool = SpoolDatabase(tmp_path / "s.sqlite3")
    spool.append(records("good", "bad"))
    bad = spool.peek(10)[1]
    spool.reject(bad.seq, "PostgreSQL refused it")
    spool.keep_rejected(records("refused-at-once")[0], "PostgreSQL refused it")
    assert [e.call_id for e in spool.peek(10)] == ["good"]
    assert spool.rejected() == 2
    spool.close()


def spool_altered(path: Path, statement: str) -> Path:
    """A new spool file, then one statement run on it behind the spool's back."""
    SpoolDatabase(path).close()
    conn = sqlite3.connect(path)
    conn.execute(statement)
    conn.commit()
    conn.close()
    return path


def test_an_unreadable_spooled_record_is_reported_not_fatal(tmp_path: Path) -> None:
    path = spool_altered(
        tmp_path / "s.sqlite3", "INSERT INTO spool (call_id, record, spooled_at) VALUES ('x', '{not json', 0)"
    )
    spool = SpoolDatabase(path)
    [entry] = spool.peek(10)
    assert entry.record is None
    assert "unreadable" in entry.error
    spool.close()


def test_a_newer_spool_format_is_refused(tmp_path: Path) -> None:
    path = spool_altered(tmp_path / "s.sqlite3", "PRAGMA user_version = 9")
    with pytest.raises(RecordsError, match="newer than this ivr"):
        SpoolDatabase(path)
