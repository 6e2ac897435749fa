"""``ivr calls list|show|export`` through their own parsers."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from ivr.cli import calls_commands
from ivr.flow.builtins import MASK
from ivr.ops.records import CallRecord, RecordsDatabase
from tests.ops.conftest import Engine
from tests.ops.helpers import make_report


def build() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ivr")
    sub = parser.add_subparsers(dest="command")
    calls_commands.register(sub)
    return parser


def run(*argv: str) -> int:
    args = build().parse_args(list(argv))
    code: int = args.func(args)
    return code


def sample_records() -> list[CallRecord]:
    return [
        CallRecord.from_report(
            make_report("1700000001.11", started_at=1_700_000_000.0),
            caller="+15550001",
            linkedid="1700000001.11",
            direction="inbound",
            instance="ivr-a",
        ),
        CallRecord.from_report(
            make_report(
                "1700000002.22",
                started_at=1_700_000_100.0,
                outcome="error",
                errors=["speech-to-text failed: timeout"],
            ),
            caller="+15550002",
        ),
        CallRecord.from_report(
            make_report("1700000003.33", started_at=1_700_000_200.0, outcome="transferred")
        ),
    ]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "calls.sqlite3"
    with RecordsDatabase(path) as records:
        records.insert(sample_records())
    return path


@pytest.fixture
def pg(pg_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> str:
    """A PostgreSQL records database with the sample calls; its URL without password (PGPASSWORD has it)."""
    from ivr.ops.records.postgres_db import PostgresDatabase

    with PostgresDatabase(pg_engine.pg_url) as records:
        records.write_records(sample_records())
    assert pg_engine.server is not None
    monkeypatch.setenv("PGPASSWORD", pg_engine.server.password)
    return pg_engine.pg_url.replace(f":{pg_engine.server.password}@", "@")


def test_list_prints_a_table_most_recent_first(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("calls", "list", "--db", str(db)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["STARTED", "DURATION", "OUTCOME", "FLOW", "CALLER", "CALL", "ID"]
    assert [line.split()[-1] for line in lines[1:]] == ["1700000003.33", "1700000002.22", "1700000001.11"]
    assert "+15550001" in lines[3]
    assert "42.5s" in lines[3]
    assert "completed" in lines[3]


def test_list_filters_and_limits(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("calls", "list", "--db", str(db), "--outcome", "error") == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert len(rows) == 1
    assert rows[0].endswith("1700000002.22")

    assert run("calls", "list", "--db", str(db), "--limit", "1", "--json") == 0
    rows = capsys.readouterr().out.splitlines()
    assert [json.loads(r)["call_id"] for r in rows] == ["1700000003.33"]

    assert run("calls", "list", "--db", str(db), "--outcome", "busy") == 0
    assert "no calls recorded matching the filters" in capsys.readouterr().out


def test_list_rejects_a_bad_limit(db: Path) -> None:
    with pytest.raises(SystemExit):
        build().parse_args(["calls", "list", "--limit", "0"])


def test_show_prints_one_call_in_full(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("calls", "show", "1700000001.11", "--db", str(db)) == 0
    out = capsys.readouterr().out
    assert "linkedid   1700000001.11" in out
    assert "welcome -> menu -> pin -> balance -> goodbye" in out
    assert "1 • • • •" in out
    assert f"pin = {MASK}" in out
    assert f"caller: {MASK}" in out
    assert "2 answer(s), median 396 ms, max 412 ms" in out
    assert "first prompt frame 231 ms after arrival" in out
    assert "instance   ivr-a" in out


def test_show_by_unique_prefix_and_errors(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("calls", "show", "1700000002", "--db", str(db), "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["call_id"] == "1700000002.22"
    assert shown["errors"] == ["speech-to-text failed: timeout"]

    assert run("calls", "show", "17000000", "--db", str(db)) == 1
    assert "matches several calls" in capsys.readouterr().err
    assert run("calls", "show", "nope", "--db", str(db)) == 1
    assert "no such call" in capsys.readouterr().err


def test_export_to_a_file_parses_back(db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.jsonl"
    assert run("calls", "export", "--db", str(db), "--out", str(out)) == 0
    assert "3 call(s) written" in capsys.readouterr().err
    records = [
        CallRecord.from_dict(json.loads(line)) for line in out.read_text(encoding="utf-8").splitlines()
    ]
    assert [r.call_id for r in records] == ["1700000001.11", "1700000002.22", "1700000003.33"]
    with RecordsDatabase(db, create=False) as reread:
        assert records[0] == reread.get("1700000001.11")


def test_export_to_stdout_with_filters(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("calls", "export", "--db", str(db), "--since", "2023-11-14T22:15:00+00:00") == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["call_id"] for line in lines] == ["1700000002.22", "1700000003.33"]


def test_missing_database_is_an_error_not_an_empty_list(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nothing.sqlite3"
    assert run("calls", "list", "--db", str(missing)) == 2
    err = capsys.readouterr().err
    assert "no such file" in err
    # right after the quick start: say why there is nothing (only ivr run writes records)
    assert "call records are written by `ivr run`" in err
    assert "`ivr simulate` and `ivr test` keep their calls to themselves" in err
    assert not missing.exists()


def test_default_path_comes_from_the_settings(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no ivr.toml here
    monkeypatch.delenv("IVR_CONFIG", raising=False)
    monkeypatch.setenv("IVR_RECORDS_PATH", str(db))
    monkeypatch.delenv("IVR_RECORDS_URL", raising=False)
    assert calls_commands.default_db_path() == db
    assert run("calls", "list") == 0
    assert "1700000003.33" in capsys.readouterr().out


def test_bad_settings_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ivr.toml").write_text("this is = = not toml", encoding="utf-8")
    monkeypatch.delenv("IVR_CONFIG", raising=False)
    assert run("calls", "list") == 2
    assert "ivr.toml" in capsys.readouterr().err


def test_calls_without_action_prints_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("calls") == 2
    assert "list" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2h", 10_000.0 - 7200), ("30m", 10_000.0 - 1800), ("1.5d", 10_000.0 - 129_600), ("90s", 9910.0)],
)
def test_parse_since_relative(text: str, expected: float) -> None:
    assert calls_commands.parse_since(text, now=10_000.0) == expected


def test_parse_since_absolute_and_garbage() -> None:
    assert calls_commands.parse_since("2023-11-14T22:13:20+00:00") == 1_700_000_000.0
    with pytest.raises(argparse.ArgumentTypeError, match="expected a duration"):
        calls_commands.parse_since("yesterday")


def test_works_under_the_real_ivr_parser(
    db: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import ivr.cli

    modules = (*ivr.cli.COMMAND_MODULES, "ivr.cli.calls_commands")
    monkeypatch.setattr(ivr.cli, "COMMAND_MODULES", tuple(dict.fromkeys(modules)))
    assert ivr.cli.main(["calls", "show", "1700000003.33", "--db", str(db), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["outcome"] == "transferred"


def test_list_show_export_on_postgres(pg: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("calls", "list", "--records-url", pg) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[-1] for line in lines[1:]] == ["1700000003.33", "1700000002.22", "1700000001.11"]

    assert run("calls", "show", "1700000001", "--records-url", pg) == 0
    out = capsys.readouterr().out
    assert "welcome -> menu -> pin -> balance -> goodbye" in out
    assert "instance   ivr-a" in out
    assert run("calls", "show", "17000000", "--records-url", pg) == 1
    assert "matches several calls" in capsys.readouterr().err

    out_file = tmp_path / "pg.jsonl"
    assert run("calls", "export", "--records-url", pg, "--out", str(out_file), "--outcome", "error") == 0
    [line] = out_file.read_text(encoding="utf-8").splitlines()
    assert CallRecord.from_dict(json.loads(line)).errors == ["speech-to-text failed: timeout"]


def test_postgres_from_the_settings_wins_over_the_path(
    pg: str,
    pg_engine: Engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("IVR_CONFIG", raising=False)
    monkeypatch.delenv("PGPASSWORD")
    monkeypatch.setenv("IVR_RECORDS_URL", pg_engine.pg_url)  # the password comes with the setting
    monkeypatch.setenv("IVR_RECORDS_PATH", str(tmp_path / "absent.sqlite3"))
    assert run("calls", "list", "--json") == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
    assert not (tmp_path / "absent.sqlite3").exists()


def test_records_url_flag_refuses_passwords_and_other_schemes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build().parse_args(["calls", "list", "--records-url", "postgresql://ivr:hunter2@db/ivr"])
    err = capsys.readouterr().err
    assert "no password on the command line: use PGPASSWORD" in err
    assert "hunter2" not in err
    with pytest.raises(SystemExit):
        build().parse_args(["calls", "list", "--records-url", "mysql://db/ivr"])
    assert "expected postgresql://" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build().parse_args(["calls", "list", "--db", "x.sqlite3", "--records-url", "postgresql://db/ivr"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_a_records_url_setting_that_is_not_postgres_is_a_setting_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("IVR_CONFIG", raising=False)
    monkeypatch.setenv("IVR_RECORDS_URL", "mysql://root:TOPSECRET@db/ivr")
    assert run("calls", "list") == 2
    err = capsys.readouterr().err
    assert "records_url (IVR_RECORDS_URL): expected postgresql://" in err
    assert "TOPSECRET" not in err
