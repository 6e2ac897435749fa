"""Records on both engines: ``engine`` runs a test once on a SQLite file and once on a real PostgreSQL."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ivr.ops.records import RecordsReader, RecordStore, create_store, open_database
from tests.real_postgres import RealPostgres


@dataclass
class Engine:
    """One records database; several stores (instances) can open it at once."""

    name: str
    directory: Path
    url: str | None = None
    server: RealPostgres | None = None

    @property
    def path(self) -> Path:
        return self.directory / "calls.sqlite3"

    def store(self, instance: str = "a", **options: Any) -> RecordStore:
        store = create_store(
            path=self.path,
            url=self.url,
            spool=self.directory / f"spool-{instance}.sqlite3",
            instance=instance,
        )
        for name, value in options.items():
            setattr(store, name, value)
        return store

    def database(self) -> RecordsReader:
        return open_database(path=self.path, url=self.url, create=True)

    @property
    def pg_url(self) -> str:
        assert self.url is not None, "a PostgreSQL engine"
        return self.url

    def sql(self, statement: str) -> str:
        """Run one statement with the engine's own client; rows as ``a|b`` lines."""
        if self.server is not None:
            return self.server.psql(statement, self.pg_url.rsplit("/", 1)[1]).strip()
        conn = sqlite3.connect(self.path)
        try:
            rows = conn.execute(statement).fetchall()
            conn.commit()
        finally:
            conn.close()
        return "\n".join("|".join(str(v) for v in row) for row in rows)


def postgres_engine(request: pytest.FixtureRequest, directory: Path) -> Engine:
    server: RealPostgres = request.getfixturevalue("real_postgres")
    return Engine("postgres", directory, url=server.create_database(), server=server)


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Engine:
    if request.param == "postgres":
        return postgres_engine(request, tmp_path)
    return Engine("sqlite", tmp_path)


@pytest.fixture
def pg_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Engine:
    return postgres_engine(request, tmp_path)
