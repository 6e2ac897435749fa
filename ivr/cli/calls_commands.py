"""``ivr calls list|show|export``: read the call records ``ivr run`` writes.

The database is ``--db PATH`` (SQLite) or ``--records-url URL`` (PostgreSQL), else the same settings as
``ivr run``: ``records_url`` (``IVR_RECORDS_URL``) when set, otherwise ``records_path``
(``IVR_RECORDS_PATH``). These commands never create a SQLite file: a wrong path is an error, not an
empty list. Reading is safe while ``ivr run`` is writing (SQLite WAL, PostgreSQL MVCC).

Exit codes: 0 done, 1 no such call, 2 unusable settings or database.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import IO

from ivr.ops.records import CallRecord, RecordsError, RecordsReader, open_database
from ivr.ops.records.urls import is_postgres_url, url_password

DEFAULT_RECORDS_PATH = Path.home() / ".local" / "share" / "ivr" / "calls.sqlite3"

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.I)
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    calls = subparsers.add_parser(
        "calls",
        help="list, show and export call records",
        description="Read the call records written by `ivr run` (one per finished call).",
    )
    calls.set_defaults(func=lambda args: _usage(calls))
    sub = calls.add_subparsers(dest="calls_command", metavar="ACTION")

    db_help = "SQLite records file (default: the settings: IVR_RECORDS_URL, else IVR_RECORDS_PATH)"
    url_help = (
        "PostgreSQL records, postgresql://user@host/db (password: PGPASSWORD, ~/.pgpass or IVR_RECORDS_URL)"
    )

    def database_options(parser: argparse.ArgumentParser) -> None:
        where = parser.add_mutually_exclusive_group()
        where.add_argument("--db", type=Path, metavar="PATH", help=db_help)
        where.add_argument("--records-url", type=_records_url, metavar="URL", help=url_help)

    listing = sub.add_parser(
        "list", help="the most recent calls", description="List calls, most recent first."
    )
    database_options(listing)
    listing.add_argument("--limit", type=_positive_int, default=50, metavar="N", help="at most N calls (50)")
    listing.add_argument(
        "--outcome", metavar="X", help="only calls with this outcome (e.g. completed, error)"
    )
    listing.add_argument(
        "--since", type=parse_since, metavar="WHEN", help="e.g. 2h, 30m, 7d or 2026-11-24T08:00"
    )
    listing.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    listing.set_defaults(func=cmd_list)

    show = sub.add_parser("show", help="one call in full", description="Show one call record in full.")
    show.add_argument("call_id", metavar="CALL_ID", help="the call id (a unique prefix is enough)")
    database_options(show)
    show.add_argument("--json", action="store_true", help="print the record as JSON")
    show.set_defaults(func=cmd_show)

    export = sub.add_parser(
        "export",
        help="export records as JSONL",
        description="Write call records as JSON Lines (one object per call, oldest first).",
    )
    database_options(export)
    export.add_argument("--out", type=Path, metavar="FILE", help="output file (default: standard output)")
    export.add_argument("--outcome", metavar="X", help="only calls with this outcome")
    export.add_argument("--since", type=parse_since, metavar="WHEN", help="e.g. 2h, 7d or 2026-11-24")
    export.set_defaults(func=cmd_export)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _records_url(text: str) -> str:
    if not is_postgres_url(text):
        raise argparse.ArgumentTypeError("expected postgresql://user@host:port/database")
    if url_password(text) is not None:
        raise argparse.ArgumentTypeError(
            "no password on the command line: use PGPASSWORD, ~/.pgpass or IVR_RECORDS_URL"
        )
    return text


def parse_since(text: str, *, now: float | None = None) -> float:
    """``2h`` / ``30m`` / ``7d`` / ``90s`` / ``1w`` ago, or an ISO date/time (local unless it has an offset)."""
    match = _RELATIVE.match(text)
    if match:
        now = time.time() if now is None else now
        return now - float(match.group(1)) * _UNIT_S[match.group(2).lower()]
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected a duration such as 2h, 30m, 7d or a date/time such as 2026-11-24T08:00"
        ) from None


def default_db_path() -> Path:
    """The ``records_path`` setting (flags > IVR_RECORDS_PATH > ivr.toml > default)."""
    from ivr.config import load_settings

    settings = load_settings()
    return Path(getattr(settings, "records_path", DEFAULT_RECORDS_PATH)).expanduser()


def _open(args: argparse.Namespace) -> RecordsReader:
    """``--db``, ``--records-url``, else the settings ``ivr run`` uses (URL first)."""
    from ivr.config import ConfigError, load_settings

    if args.db is not None:
        return open_database(path=args.db.expanduser())
    if args.records_url is not None:
        return open_database(path=DEFAULT_RECORDS_PATH, url=args.records_url)
    try:
        settings = load_settings()
    except ConfigError as exc:
        raise RecordsError(str(exc)) from None
    url = settings.records_url.get_secret_value() if settings.records_url else None
    return open_database(path=Path(settings.records_path).expanduser(), url=url)


NO_RECORDS_YET = (
    "; call records are written by `ivr run` when it serves calls (this file appears with its first "
    "call). `ivr simulate` and `ivr test` keep their calls to themselves and print them instead; "
    "use --db FILE for another file"
)


def _why(exc: RecordsError) -> str:
    """Why there is no database yet, right after the quick start: nothing has written one."""
    return NO_RECORDS_YET if "no such file" in str(exc) else ""


def cmd_list(args: argparse.Namespace) -> int:
    try:
        with _open(args) as db:
            records = db.list(limit=args.limit, since=args.since, outcome=args.outcome)
    except RecordsError as exc:
        print(f"ivr calls: {exc}{_why(exc)}", file=sys.stderr)
        return 2
    out = sys.stdout
    if args.json:
        for record in records:
            out.write(record.to_json() + "\n")
        return 0
    if not records:
        print("no calls recorded" + (" matching the filters" if args.outcome or args.since else ""))
        return 0
    rows = [
        (
            _local(r.started_at),
            f"{r.duration_s:.1f}s",
            r.outcome or "-",
            r.flow or "-",
            r.caller or "-",
            r.call_id,
        )
        for r in records
    ]
    header = ("STARTED", "DURATION", "OUTCOME", "FLOW", "CALLER", "CALL ID")
    widths = [max(len(header[i]), *(len(row[i]) for row in rows)) for i in range(len(header) - 1)]
    for row in (header, *rows):
        cells = [cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)] + [row[-1]]
        out.write("  ".join(cells).rstrip() + "\n")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    try:
        with _open(args) as db:
            record = db.get(args.call_id)
            matches = [] if record is not None else db.find(args.call_id, limit=2)
            if record is None and len(matches) == 1:
                record = db.get(matches[0])
    except RecordsError as exc:
        print(f"ivr calls: {exc}{_why(exc)}", file=sys.stderr)
        return 2
    if record is None:
        why = "matches several calls, give more of it" if len(matches) > 1 else "no such call"
        print(f"ivr calls show: {args.call_id!r}: {why}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(record.to_dict(), ensure_ascii=False, indent=2))
    else:
        write_details(record, sys.stdout)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    to_stdout = args.out is None or str(args.out) == "-"
    try:
        with _open(args) as db:
            if to_stdout:
                count = db.export_jsonl(sys.stdout, since=args.since, outcome=args.outcome)
                sys.stdout.flush()
            else:
                count = db.export_jsonl(args.out, since=args.since, outcome=args.outcome)
    except RecordsError as exc:
        print(f"ivr calls: {exc}{_why(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"ivr calls export: {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if not to_stdout:
        print(f"{count} call(s) written to {args.out}", file=sys.stderr)
    return 0


def write_details(record: CallRecord, out: IO[str]) -> None:
    """The human form of ``ivr calls show``."""
    lines = [
        ("call", record.call_id),
        ("flow", record.flow or "-"),
        ("outcome", record.outcome + (f" ({record.reason})" if record.reason else "")),
        ("started", _local(record.started_at)),
        ("ended", f"{_local(record.ended_at)}  ({record.duration_s:.1f} s)"),
        ("caller", record.caller or "-"),
        ("direction", record.direction or "-"),
        ("linkedid", record.linkedid or "-"),
        ("instance", _instances(record)),
        ("path", " -> ".join(record.path) or "-"),
        ("dtmf", " ".join(record.dtmf) or "-"),
    ]
    if record.greeting_latency_ms is not None:
        lines.append(("greeting", f"first prompt frame {record.greeting_latency_ms:.0f} ms after arrival"))
    if record.response_latency_ms:
        values = record.response_latency_ms
        lines.append(
            (
                "latency",
                f"{len(values)} answer(s), median {statistics.median(values):.0f} ms, max {max(values):.0f} ms",
            )
        )
    width = max(len(k) for k, _ in lines) + 2
    for key, value in lines:
        out.write(f"{key.ljust(width)}{value}\n")
    if record.errors:
        out.write("errors\n")
        for error in record.errors:
            out.write(f"  - {error}\n")
    if record.variables:
        out.write("variables\n")
        for name, value in sorted(record.variables.items()):
            shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            out.write(f"  {name} = {shown}\n")
    if record.transcript:
        out.write("transcript\n")
        for speaker, text in record.transcript:
            out.write(f"  {speaker}: {text}\n")


def _instances(record: CallRecord) -> str:
    served = record.instances or ([record.instance] if record.instance else [])
    text = " -> ".join(served) or "-"
    return f"{text}  (resumed)" if record.resumed else text


def _local(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).astimezone().strftime("%Y-%m-%d %H:%M:%S %z")
