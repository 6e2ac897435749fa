"""The records package sits below the call layer and keeps PostgreSQL optional."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import ivr.ops.records
from tests.layering import forbidden_imports, imported_modules

PACKAGE = Path(ivr.ops.records.__file__).parent
ABOVE = ("ivr.call", "ivr.cli", "ivr.flow", "ivr.sim", "ivr.simulation", "ivr.ari", "ivr.config")
POSTGRES_MODULES = {"postgres_db.py", "postgres_store.py", "postgres_writer.py"}


def test_records_import_nothing_above_them() -> None:
    files = sorted(PACKAGE.glob("*.py"))
    assert len(files) >= 15
    for path in files:
        bad = forbidden_imports(path, ABOVE)
        assert not bad, f"ivr/ops/records/{path.name} imports {bad}"


def test_only_the_postgres_modules_import_the_driver() -> None:
    for path in PACKAGE.glob("*.py"):
        uses_driver = any(m == "psycopg" or m.startswith("psycopg.") for m in imported_modules(path))
        assert uses_driver == (path.name in POSTGRES_MODULES), path.name


def test_sqlite_records_load_without_the_driver() -> None:
    code = "import sys, ivr.ops.records, ivr.cli.calls_commands; print(sorted(m for m in sys.modules if m.startswith('psycopg')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
