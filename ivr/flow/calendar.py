"""Business hours: is a calendar open at a moment, when does it close, when does it open next.

Pure functions over :class:`~ivr.flow.model_hours.Hours`; the engine evaluates every calendar of the flow
at the moment of each event and offers the result to templates and ``branch`` conditions as
``hours.NAME``:

================ =====================================================================================
``open``         true while the calendar is open
``closes_at``    ``'18:00'`` while open (the end of the current span), else ``''``
``next_open``    the next opening as a moment (``date``, ``time``, ``weekday`` ...), or none in a year
``holiday``      the name (or ``'closed'``) of today's holiday or special day, else ``''``
================ =====================================================================================

Holidays may live in files the flow includes (``include: [uk-holidays.yaml]``, beside the flow): a YAML
list of ``closed`` entries, or a mapping with a ``closed`` list. :func:`with_includes` merges them when
the flow is loaded, so the engine never touches the disk.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from ivr.flow.clock import local, moment, zone
from ivr.flow.model import Flow
from ivr.flow.model_captures import WEEKDAYS
from ivr.flow.model_hours import ClosedDay, Hours, _closed_entry, expand_days
from ivr.flow.source import parse_yaml, read_flow_text

HOURS_FIELDS: dict[str, str] = {
    "open": "true while the calendar is open",
    "closes_at": "'18:00' while open (the end of the current opening), else ''",
    "next_open": "the next opening (date, time, weekday ...), or none within a year",
    "holiday": "the name of today's holiday or special day ('closed' if unnamed), else ''",
}
_SEARCH_DAYS = 370
_CLOSED_LIST = TypeAdapter(list[ClosedDay])


def _minutes(clock: str) -> int:
    hours, minutes = clock.strip().split(":")
    return int(hours) * 60 + int(minutes)


def _spans(spans: list[str]) -> list[tuple[int, int]]:
    out = []
    for span in spans:
        start, end = span.split("-")
        out.append((_minutes(start), _minutes(end)))
    return sorted(out)


def _weekly(hours: Hours) -> dict[str, list[tuple[int, int]]]:
    week: dict[str, list[tuple[int, int]]] = {day: [] for day in WEEKDAYS}
    for spec, spans in hours.open.items():
        for day in expand_days(spec):
            week[day] = _spans(spans)
    return week


def _day_spans(hours: Hours, day: dt.date) -> tuple[list[tuple[int, int]], str]:
    """Opening spans of one day (special days and holidays first) and the day's holiday name."""
    iso = day.isoformat()
    for entry in hours.closed:
        if entry.date == iso:
            return (_spans(entry.hours) if entry.hours else []), entry.name or "closed"
    return _weekly(hours)[WEEKDAYS[day.weekday()]], ""


def _at(day: dt.date, minutes: int, tz: str) -> dt.datetime:
    base = dt.datetime.combine(day, dt.time(0), tzinfo=zone(tz))
    return base + dt.timedelta(minutes=minutes)


def status(hours: Hours, timestamp: float, default_tz: str) -> dict[str, Any]:
    """The ``hours.NAME`` mapping at ``timestamp``."""
    tz = hours.timezone or default_tz
    now = local(timestamp, tz)
    minute = now.hour * 60 + now.minute
    spans, holiday = _day_spans(hours, now.date())
    current = next(((s, e) for s, e in spans if s <= minute < e), None)
    next_open: dict[str, Any] | None = None
    for offset in range(_SEARCH_DAYS):
        day = now.date() + dt.timedelta(days=offset)
        day_spans, _ = _day_spans(hours, day)
        start = next((s for s, _e in day_spans if offset > 0 or s > minute), None)
        if start is not None:
            next_open = moment(_at(day, start, tz).timestamp(), tz)
            break
    closes = ""
    if current is not None:
        end = current[1]
        closes = "24:00" if end == 24 * 60 else f"{end // 60:02d}:{end % 60:02d}"
    return {"open": current is not None, "closes_at": closes, "next_open": next_open, "holiday": holiday}


def all_status(calendars: Mapping[str, Hours], timestamp: float, default_tz: str) -> dict[str, Any]:
    return {name: status(h, timestamp, default_tz) for name, h in calendars.items()}


class IncludeError(ValueError):
    """An included holiday file is missing or malformed; the message names the file."""


def read_include(path: Path) -> list[ClosedDay]:
    """The ``closed`` entries of one holiday file, read within the flow files' limits (size, UTF-8,
    depth, aliases: :func:`ivr.flow.source.read_flow_text` and :func:`~ivr.flow.source.parse_yaml`)."""
    text, problem = read_flow_text(path)
    if problem is not None or text is None:
        reason = problem.message if problem is not None else "unreadable"
        raise IncludeError(f"{path.name}: {reason}")
    data, _, issues = parse_yaml(text, str(path))
    if issues:
        first = issues[0]
        raise IncludeError(f"{path.name}:{first.line}:{first.column}: {first.message}")
    if isinstance(data, dict):
        data = data.get("closed")
    if not isinstance(data, list):
        raise IncludeError(f"{path.name}: expected a list of closed days (or a mapping with 'closed')")
    try:
        return _CLOSED_LIST.validate_python([_closed_entry(item) for item in data])
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise IncludeError(f"{path.name}: entry {where}: {err['msg']}") from None


def with_includes(hours: Mapping[str, Hours], directory: Path) -> dict[str, Hours]:
    """Calendars with their included files' entries merged in (entries written in the flow win)."""
    out: dict[str, Hours] = {}
    for name, calendar in hours.items():
        if not calendar.include:
            out[name] = calendar
            continue
        own = {entry.date for entry in calendar.closed}
        merged = list(calendar.closed)
        for file in calendar.include:
            for entry in read_include(directory / file):
                if entry.date not in own:
                    merged.append(entry)
                    own.add(entry.date)
        out[name] = calendar.model_copy(update={"closed": merged})  # include stays: the version hashes it
    return out


def flow_with_includes(flow: Flow, directory: Path) -> Flow:
    """``flow`` with its calendars' include files merged (the flow itself when it includes none)."""
    if not any(h.include for h in flow.hours.values()):
        return flow
    return flow.model_copy(update={"hours": with_includes(flow.hours, directory)})
