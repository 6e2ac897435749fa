"""Reading records, the same on both engines: list, get, find by prefix, count, stream, JSONL export.

Queries are written once with pyformat placeholders (``%(name)s``); each engine's database class runs
them (SQLite after rewriting the placeholders to ``:name``).
"""

from __future__ import annotations

import builtins
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, Any, ClassVar, Self

from ivr.ops.records.model import CallRecord, Checkpoint
from ivr.ops.records.schema import (
    CALL_COLUMNS,
    CHECKPOINT_COLUMNS,
    checkpoint_from_row,
    checkpoint_lookup,
    filters,
    record_from_row,
)

DEFAULT_LIST_LIMIT = 50
_SELECT_CALLS = f"SELECT {', '.join(CALL_COLUMNS)} FROM calls"
_SELECT_CHECKPOINTS = f"SELECT {', '.join(CHECKPOINT_COLUMNS)} FROM checkpoints"


def list_query(
    limit: int | None, since: float | datetime | None, outcome: str | None
) -> tuple[str, dict[str, Any]]:
    """Most recent first (by start time); ``limit=None`` for all."""
    where, params = filters(since, outcome)
    sql = f"{_SELECT_CALLS}{where} ORDER BY started_at DESC, call_id"
    if limit is not None:
        sql += " LIMIT %(limit)s"
        params["limit"] = max(0, int(limit))
    return sql, params


def get_query(call_id: str) -> tuple[str, dict[str, Any]]:
    return f"{_SELECT_CALLS} WHERE call_id = %(call_id)s", {"call_id": call_id}


def checkpoint_query(
    call_id: str | None, channel_id: str | None, linkedid: str | None
) -> tuple[str, dict[str, Any]]:
    where, params = checkpoint_lookup(call_id, channel_id, linkedid)
    return f"{_SELECT_CHECKPOINTS}{where} ORDER BY updated_at DESC LIMIT 1", params


def stale_checkpoints_query(before: float, limit: int) -> tuple[str, dict[str, Any]]:
    """Checkpoints nobody wrote or touched since ``before``, oldest first."""
    sql = f"{_SELECT_CHECKPOINTS} WHERE updated_at < %(before)s ORDER BY updated_at LIMIT %(limit)s"
    return sql, {"before": before, "limit": limit}


class RecordsReader(ABC):
    """The read side of a records database, for one thread (``ivr calls``, exports, tests)."""

    json_text: ClassVar[bool]
    """JSON columns come back as text (SQLite) rather than decoded (PostgreSQL ``jsonb``)."""

    @property
    @abstractmethod
    def where(self) -> str:
        """The database as an operator knows it (a path, a URL without password)."""

    @property
    @abstractmethod
    def schema_version(self) -> int: ...

    @abstractmethod
    def _rows(self, sql: str, params: Mapping[str, Any]) -> builtins.list[Sequence[Any]]: ...

    @abstractmethod
    def _stream(self, sql: str, params: Mapping[str, Any], chunk: int) -> Iterator[Sequence[Any]]: ...

    @abstractmethod
    def close(self) -> None: ...

    def list(
        self,
        limit: int | None = DEFAULT_LIST_LIMIT,
        since: float | datetime | None = None,
        outcome: str | None = None,
    ) -> builtins.list[CallRecord]:
        """Most recent first (by start time); ``limit=None`` for all."""
        rows = self._rows(*list_query(limit, since, outcome))
        return [record_from_row(row, json_text=self.json_text) for row in rows]

    def get(self, call_id: str) -> CallRecord | None:
        rows = self._rows(*get_query(call_id))
        return record_from_row(rows[0], json_text=self.json_text) if rows else None

    def find(self, prefix: str, limit: int = 10) -> builtins.list[str]:
        """Call ids starting with ``prefix`` (for ``ivr calls show`` with an abbreviated id)."""
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self._rows(
            "SELECT call_id FROM calls WHERE call_id LIKE %(pattern)s ESCAPE '\\'"
            " ORDER BY started_at DESC LIMIT %(limit)s",
            {"pattern": escaped + "%", "limit": limit},
        )
        return [str(r[0]) for r in rows]

    def count(self, since: float | datetime | None = None, outcome: str | None = None) -> int:
        where, params = filters(since, outcome)
        return int(self._rows(f"SELECT count(*) FROM calls{where}", params)[0][0])

    def iter_records(
        self, since: float | datetime | None = None, outcome: str | None = None, *, chunk: int = 500
    ) -> Iterator[CallRecord]:
        """Oldest first, read in chunks (bounded memory on big databases)."""
        where, params = filters(since, outcome)
        sql = f"{_SELECT_CALLS}{where} ORDER BY started_at, call_id"
        for row in self._stream(sql, params, chunk):
            yield record_from_row(row, json_text=self.json_text)

    def load_checkpoint(
        self, call_id: str | None = None, *, channel_id: str | None = None, linkedid: str | None = None
    ) -> Checkpoint | None:
        """A live call's checkpoint by call id, or by the channel id / linkedid the dialplan hands back."""
        rows = self._rows(*checkpoint_query(call_id, channel_id, linkedid))
        return checkpoint_from_row(rows[0], json_text=self.json_text) if rows else None

    def stale_checkpoints(self, before: float, limit: int = 100) -> builtins.list[Checkpoint]:
        """Checkpoints not written or touched since ``before`` (epoch seconds), oldest first."""
        rows = self._rows(*stale_checkpoints_query(before, limit))
        return [checkpoint_from_row(row, json_text=self.json_text) for row in rows]

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

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
